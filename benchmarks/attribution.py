"""Attribution vs exact ablation on every zoo model, and screening of single-coupling sweeps at n = 64 and 256.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

Per model, one batch of trials (common to all variants): the exact loss change of removing each nonzero coupling
(``sj.evaluate`` with ``sj.ablate.single_couplings``), the first-order prediction ``sj.attribute`` and the
second-order one (``order=2``: + ½ T² × Gauss-Newton diagonal from 64 random output probes). Reported: Spearman,
sign agreement, overlap of the top 1 % / 5 % (most harmful), where the prediction fails (by coupling size, the
exact top 1 % it misses), and screening (``sj.attribution.screen``): exact evaluations needed until the top 1 % is
stable, whether that equals the exhaustive top 1 %, and the oracle count (the shortest prefix of the attribution
ranking that contains the exhaustive top 1 %) for first order, second order and ``|T_ij|``.

n = 256: a flip-flop network trained here (``sj.train.train``, 3 bits, seed 0; steps below), the exhaustive sweep
of its ~32,600 couplings measured, and screening; n = 512 estimated from the measured per-variant cost (×4 for
n²) and the screening share.

    python benchmarks/attribution.py                   # zoo + n = 256, writes benchmarks/results/attribution.json
    python benchmarks/attribution.py --quick           # two zoo models, small batch, no n = 256 (smoke test)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from scipy import stats

import schurjax as sj
from schurjax import attribution

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_points import machine_info, write_record  # noqa: E402


def _variant_index(sf, variants) -> np.ndarray:
    index = {(int(i), int(j)): q for q, (i, j) in enumerate(sf.couplings)}
    return np.array([index[(lab["row"], lab["col"])] for lab in variants.labels])


def oracle_count(order: np.ndarray, exact: np.ndarray, k: int) -> int:
    """Length of the shortest prefix of ``order`` that holds the exact top-k (largest ``exact``)."""
    pos = np.empty(order.size, np.int64)
    pos[order] = np.arange(order.size)
    return int(pos[attribution._top(exact, k)].max() + 1)


def _ranked(x: np.ndarray) -> np.ndarray:
    return attribution._top(x, x.size)


def analyse(
    model, sf, batch, *, task=None, key: int = 0, probes: int = 64, frac: float = 0.01, screen_evaluate=None
) -> dict[str, Any]:
    """Exact sweep, first- and second-order attribution, agreement, failures and screening for one model."""
    v = sj.ablate.single_couplings(sf)
    vi = _variant_index(sf, v)
    t0 = time.perf_counter()
    res = sj.evaluate(model, sf, v, batch)
    t_exact = time.perf_counter() - t0
    exact = np.asarray(res.delta_loss, np.float64)
    t0 = time.perf_counter()
    p1 = sj.attribute(model, sf, batch, task=task)[vi]
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    p2 = sj.attribute(model, sf, batch, task=task, order=2, key=jax.random.key(key), probes=probes)[vi]
    t_second = time.perf_counter() - t0
    K = len(v)
    k = max(1, math.ceil(frac * K))
    T = np.abs(sf.T[sf.couplings[vi, 0], sf.couplings[vi, 1]])
    big = T >= np.quantile(T, 0.9)

    def sub(mask):
        return {
            name: {
                "spearman": float(stats.spearmanr(p[mask], exact[mask]).statistic),
                "sign_agreement": float(np.mean(np.sign(p[mask]) == np.sign(exact[mask]))),
            }
            for name, p in (("first", p1), ("second", p2))
        }

    top_exact = attribution._top(exact, k)
    missed = sorted(set(top_exact.tolist()) - set(attribution._top(p2, k).tolist()))
    bidx = sf.block_index
    ev = np.abs(sf.eigvals)

    def describe(q):
        i, j = (int(a) for a in sf.couplings[vi[q]])
        return {
            "i": i,
            "j": j,
            "T": float(sf.T[i, j]),
            "exact": float(exact[q]),
            "first": float(p1[q]),
            "second": float(p2[q]),
            "abs_T_percentile": float(np.mean(T <= abs(sf.T[i, j]))),
            "target_abs_eig": float(ev[i]),
            "source_abs_eig": float(ev[j]),
            "block_distance": int(bidx[j] - bidx[i]),
        }

    t0 = time.perf_counter()
    scr = attribution.screen(model, sf, batch, pred=_full(p2, vi, sf), frac=frac, task=task, evaluate=screen_evaluate)
    t_screen = time.perf_counter() - t0
    recall = len(set(scr.top.tolist()) & set(top_exact.tolist())) / k
    return {
        "n": sf.n,
        "K": K,
        "k": k,
        "base_loss": float(res.base_loss),
        "batch": int(np.shape(batch.inputs)[0]),
        "seconds": {"exact_sweep": t_exact, "first_order": t_first, "second_order": t_second, "screen": t_screen},
        "first": attribution.agreement(p1, exact),
        "second": attribution.agreement(p2, exact),
        "by_size": {"largest_10%_of_|T|": sub(big), "other_90%": sub(~big)},
        "max_rel_exact": float(exact.max() / max(res.base_loss, 1e-30)),
        "top1_missed_by_second": [describe(q) for q in missed],
        "top1_first_order_sign_errors": int(np.sum(p1[top_exact] <= 0)),
        "screen": {
            "n_evaluated": scr.n_evaluated,
            "share": scr.n_evaluated / K,
            "rounds": scr.rounds,
            "recall_of_exhaustive_top": recall,
        },
        "oracle": {
            "first": oracle_count(_ranked(p1), exact, k),
            "second": oracle_count(_ranked(p2), exact, k),
            "abs_first": oracle_count(_ranked(np.abs(p1)), exact, k),
            "abs_T": oracle_count(_ranked(T), exact, k),
        },
        "exact_var_per_s": K / t_exact,
    }


def _full(pv: np.ndarray, vi: np.ndarray, sf) -> np.ndarray:
    out = np.zeros(sf.couplings.shape[0])
    out[vi] = pv
    return out


def run_zoo(
    tasks=("copy", "flipflop", "sine", "context"), seeds=(0, 1, 2, 3), *, batch_size: int = 64, key: int = 3
) -> list[dict[str, Any]]:
    rows = []
    for name in tasks:
        tk = sj.zoo.task(name)
        batch = tk.sample(jax.random.key(key), batch_size)
        for s in seeds:
            model = sj.zoo.load(name, seed=s)
            sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
            r = analyse(model, sf, batch, key=s)
            r.update(task=name, seed=s)
            rows.append(r)
            print(
                f"{name:8s} {s}: first sp {r['first']['spearman']:.2f} sign {r['first']['sign_agreement']:.2f} "
                f"| second sp {r['second']['spearman']:.2f} sign {r['second']['sign_agreement']:.2f} "
                f"top1 {r['second']['top_1%']:.2f} top5 {r['second']['top_5%']:.2f} | screen "
                f"{r['screen']['n_evaluated']}/{r['K']} recall {r['screen']['recall_of_exhaustive_top']:.2f} "
                f"| oracle {r['oracle']}",
                file=sys.stderr,
                flush=True,
            )
    return rows


def run_n256(*, n: int = 256, steps: int = 1500, batch_size: int = 32, key: int = 3) -> dict[str, Any]:
    """Train a flip-flop network of n units (seed 0), then analyse it as the zoo models (exhaustive sweep timed)."""
    tk = sj.tasks.get("flipflop")
    t0 = time.perf_counter()
    tr = sj.train.train(tk, [0], n_hidden=n, steps=steps, progress=False)
    t_train = time.perf_counter() - t0
    model = tr.models[0]
    held = tk.sample(jax.random.key(1_000_000), 512)
    y = jax.vmap(model)(held.inputs)
    sf = sj.ordered_schur(np.asarray(model.W_rec, np.float64))
    batch = tk.sample(jax.random.key(key), batch_size)
    r = analyse(model, sf, batch, key=0)
    per_variant = r["seconds"]["exact_sweep"] / r["K"]
    m512 = 512 * 511 // 2  # couplings of a 512-unit network with all-real spectrum (upper bound)
    est = {
        "K": m512,
        "assumption": "per-variant cost x4 (n^2), screening share as measured at n = 256",
        "exhaustive_seconds": m512 * per_variant * 4,
        "screen_evaluations": int(round(r["screen"]["share"] * m512)),
        "screen_seconds": r["screen"]["share"] * m512 * per_variant * 4,
    }
    trained = {
        "steps": steps,
        "seconds": t_train,
        "heldout_loss": float(tk.loss(y, held)),
        "heldout_score": float(tk.score(y, held)),
    }
    r.update(task="flipflop", seed=0, train=trained, estimate_512=est)
    return r


def format_markdown(rec: dict[str, Any]) -> str:
    head = (
        "| model | Spearman 1st | Spearman 2nd | sign 1st | sign 2nd | top 1 % 1st | top 1 % 2nd | top 5 % 2nd "
        "| screen: exact evals (recall) | oracle 1st / 2nd / abs T |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rec["zoo"] + ([rec["n256"]] if rec.get("n256") else []):
        o = r["oracle"]
        lines.append(
            f"| {r['task']} {r['seed']} (n={r['n']}) | {r['first']['spearman']:.2f} | {r['second']['spearman']:.2f} "
            f"| {r['first']['sign_agreement']:.2f} | {r['second']['sign_agreement']:.2f} | {r['first']['top_1%']:.2f} "
            f"| {r['second']['top_1%']:.2f} | {r['second']['top_5%']:.2f} | {r['screen']['n_evaluated']} of {r['K']} "
            f"({r['screen']['recall_of_exhaustive_top']:.2f}) | {o['first']} / {o['second']} / {o['abs_T']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two zoo models, batch 8, no n = 256")
    p.add_argument("--no-n256", action="store_true")
    p.add_argument("--n256-steps", type=int, default=1500)
    p.add_argument("--out", default=str(RESULTS / "attribution.json"))
    a = p.parse_args(argv)
    rec: dict[str, Any] = {"machine": machine_info(), "quick": a.quick}
    if a.quick:
        rec["zoo"] = run_zoo(("flipflop",), (0, 1), batch_size=8)
    else:
        rec["zoo"] = run_zoo()
        if not a.no_n256:
            rec["n256"] = run_n256(steps=a.n256_steps)
    return write_record(rec, a.out, format_markdown)


if __name__ == "__main__":
    main()
