"""Precision of the default rollout for every network form: each form x nonlinearity x alpha against float64.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

For each form (rate, post, current) and nonlinearity (tanh, relu, softplus), four random networks with a learned
initial state, one per ``alpha`` in (1, 0.5, 0.2, 0.05), are evaluated in one call (float32, matmul precision
"highest", the deviation form with its float64 re-run: the default) and compared with the engine's float64
rollout (``dtype=jnp.float64``, itself checked against an independent NumPy rollout of every form in
``tests/test_engine_forms.py``). The error of a metric ``x`` is ``|x - ref| / max(|ref|, 1e-5 base_loss)``.

Problems. The regression targets are the network's own outputs plus 5 % noise, so that the base residual is small
and the first-order terms of the loss change nearly cancel, as at a trained minimum (the hard case for float32).
Edits: every single coupling and the four largest couplings scaled by ``1 - 1e-6 ... 0`` (shared path); bands,
all nonnormal and 16 random masks removing ~25 % of the couplings (dense path). The cross-entropy rows use
classes = the argmax of the network's own outputs at its decision steps (logits scaled to be confident).

    python benchmarks/precision_forms.py                   # writes benchmarks/results/precision_forms.json
    python benchmarks/precision_forms.py --quick           # tiny sizes (smoke test)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import schurjax as sj

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_points import machine_info, write_record  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FORMS = ("rate", "post", "current")
NONLINEARITIES = ("tanh", "relu", "softplus")
ALPHAS = (1.0, 0.5, 0.2, 0.05)
METRICS = ("delta_loss", "output_distance", "hidden_distance", "loss")


def _model(rng, n: int, n_in: int, n_out: int, alpha: float, nonlinearity: str, form: str, logit_scale: float):
    gain = 1.3 if nonlinearity == "tanh" else 0.9
    return sj.RateRNN.from_arrays(
        W_in=rng.normal(size=(n, n_in)),
        W_rec=rng.normal(size=(n, n)) * gain / np.sqrt(n),
        b=rng.normal(size=n) * 0.3,
        W_out=rng.normal(size=(n_out, n)) * logit_scale / np.sqrt(n),
        b_out=rng.normal(size=n_out) * 0.1,
        alpha=alpha,
        nonlinearity=nonlinearity,
        form=form,
        h0=rng.normal(size=n) * 0.5,
    )


def _variants(sf, path: str, rng):
    if path == "shared":
        top = np.argsort(-np.abs(sf.T[sf.couplings[:, 0], sf.couplings[:, 1]]))[:4]
        scaled = [sj.ablate.scaling(sf, [1 - 1e-6, 1 - 1e-4, 0.99, 0.0], which=[int(c)]) for c in top]
        return sj.ablate.Variants.concat(sj.ablate.single_couplings(sf), *scaled)
    masks = np.ones((16, sf.n, sf.n))
    for m in masks:
        drop = sf.couplings[rng.random(len(sf.couplings)) < 0.25]
        m[drop[:, 0], drop[:, 1]] = 0.0
    return sj.ablate.Variants.concat(
        sj.ablate.bands(sf), sj.ablate.all_nonnormal(sf), sj.ablate.from_masks(masks, sf=sf)
    )


def _batch(models, x, loss: str, rng) -> sj.TaskBatch:
    """Targets near the first model's own outputs (regression), or its own classes (cross-entropy)."""
    y = np.asarray(jax.vmap(models[0])(jnp.asarray(x, jnp.float32)), np.float64)
    if loss == "mse":
        tgt, mask = y + 0.05 * rng.normal(size=y.shape), np.ones_like(y)
    else:
        tgt = np.eye(y.shape[-1])[y.argmax(-1)]
        mask = np.repeat(rng.random(y.shape[:2] + (1,)) < 0.5, y.shape[-1], axis=2) * 1.0
    return sj.TaskBatch(*(jnp.asarray(a, jnp.float32) for a in (x, tgt, mask)))


def _errors(res, ref) -> dict[str, float]:
    out = {}
    for name in METRICS:
        want = getattr(ref, name)
        err = np.abs(getattr(res, name) - want) / np.maximum(np.abs(want), 1e-5 * ref.base_loss)
        out[name] = float(err.max())
    return out


def measure(
    *,
    n: int = 32,
    B: int = 32,
    T: int = 60,
    forms=FORMS,
    nonlinearities=NONLINEARITIES,
    alphas=ALPHAS,
    losses=("mse", "ce"),
    seed: int = 0,
) -> dict[str, Any]:
    """Max error over variants and alphas per (loss, form, nonlinearity, path); returns the record."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    for loss, form, nl in itertools.product(losses, forms, nonlinearities):
        n_out = 2 if loss == "mse" else 3
        models = [_model(rng, n, 3, n_out, a, nl, form, 1.0 if loss == "mse" else 4.0) for a in alphas]
        sfs = [sj.ordered_schur(np.asarray(m.W_rec, np.float64)) for m in models]
        batch = _batch(models, rng.normal(size=(B, T, 3)), loss, rng)
        for path in ("shared", "dense") if loss == "mse" else ("shared",):
            vsets = [_variants(sf, path, rng) for sf in sfs]
            got = sj.engine.evaluate_many(models, sfs, vsets, batch, path=path, loss=loss)
            ref = sj.engine.evaluate_many(models, sfs, vsets, batch, path=path, loss=loss, dtype=jnp.float64)
            errs = [_errors(g, r) for g, r in zip(got, ref, strict=True)]
            row = {"loss_type": loss, "form": form, "nonlinearity": nl, "path": path, "K": sum(len(v) for v in vsets)}
            row.update({name: max(e[name] for e in errs) for name in METRICS})
            row["per_alpha"] = {str(a): e for a, e in zip(alphas, errs, strict=True)}
            rows.append(row)
            print(format_row(row), file=sys.stderr)
    return {
        "sizes": {"n": n, "B": B, "T": T, "alphas": list(alphas)},
        "rows": rows,
        "worst": {name: max(r[name] for r in rows) for name in METRICS},
        "seconds": time.perf_counter() - t0,
    }


def format_row(r: dict[str, Any]) -> str:
    cells = " | ".join(f"{r[name]:.1e}" for name in METRICS)
    return f"| {r['loss_type']} | {r['form']} | {r['nonlinearity']} | {r['path']} | {r['K']} | {cells} |"


def format_table(rec: dict[str, Any]) -> str:
    head = "| loss | form | nonlinearity | path | variants | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (5 + len(METRICS))]
    lines += [format_row(r) for r in rec["rows"]]
    return "\n".join(lines)


QUICK = dict(n=6, B=3, T=4, forms=("current",), nonlinearities=("softplus",), alphas=(1.0, 0.2), losses=("mse",))
"""The smoke test's sizes."""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--out", default=str(RESULTS / "precision_forms.json"))
    args = p.parse_args(argv)
    kw = QUICK if args.quick else {}
    rec = {"machine": machine_info(), **measure(**kw)}
    write_record(rec, args.out, format_table)


if __name__ == "__main__":
    main()
