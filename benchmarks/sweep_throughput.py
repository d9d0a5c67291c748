"""Sweep throughput: variants per second of the schurjax engine against simple baselines, on one problem.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026); the cases,
targets and measured figures are in benchmarks/RESULTS.md.

Every method evaluates the same K variants ``W_k = Q (T + dT_k) Q^T`` of one n-unit tanh RNN on the same B trials
of T steps (float32) and reduces, per variant, the masked MSE and the output distance to the unablated model:

* ``loop``: one variant at a time, a jitted single-variant rollout called in a Python loop (``W_k`` formed on the
  host in float64). Only a subset of the variants is timed (``--loop-subset``) and the rate is extrapolated
  (each variant costs the same).
* ``vmap``: ``jax.vmap`` of the single rollout over dense ``W_k`` (formed on the device from ``dT``), in slabs of at
  most 1024 variants, states (B, n) per variant.
* ``engine``: ``schurjax.evaluate`` with ``path="auto"`` and ``compiled_chunk="auto"``, everything included (host
  preparation of the edits, the float64 base trajectory, chunking, metrics, the float64 re-run of ill-conditioned
  loss changes). ``engine_plain`` (opt-in): the same with ``deviation=False`` (the plain rollout).
  ``engine@N`` (opt-in, N an integer): the engine with ``compiled_chunk=N``, for before/after comparisons of the chunk
  rule in one run (``engine@32`` is the dense path's chunk before run 8).
* ``engine_leaky``: the engine on the same weights as a leaky rate network, ``RateRNN(alpha=LEAKY_ALPHA, "tanh",
  "rate")`` (the step ``h' = 0.8 h + 0.2 tanh(W h + u)``); its losses differ from the others', its speed should
  not (``ratios["engine_leaky/engine"]``, target >= 0.9).
* ``torch_bmm``: PyTorch, float32, ``torch.set_num_threads`` = the JAX core count; states (K, B, n) advanced with
  ``torch.baddbmm`` + ``tanh`` per step over all variants at once (slabs of 1024), ``W_k`` formed with ``bmm``.
  ``torch_bmm_1t`` (opt-in) is the same on one thread, which suffers less from background load; the table also
  gives each method's ratio to the faster of the two torch runs.

The ``dT`` stacks of the baselines are materialised before timing (the engine does that inside its timed call).
Each method is timed ``--repeats`` times, interleaved with the others (so background load hits all of them
alike), after one untimed warm-up; the best time is reported.

Cases: ``C1`` (CPU: n=128, K=1024 single couplings, B=32, T=60), ``C1dense`` (C1 with K random masks each removing
~25 % of the couplings), ``G1`` (GPU: n=128, K=8128 single couplings, B=64, T=100). Flags override sizes.

    python benchmarks/sweep_throughput.py --case C1
    python benchmarks/sweep_throughput.py --case C1dense --methods engine,torch_bmm
    python benchmarks/sweep_throughput.py --memory --n 256 --B 16 --T 20     # peak-RSS sweep (see memory_sweep)
    python benchmarks/sweep_throughput.py --precision-check                   # error of each form vs float64
    python benchmarks/sweep_throughput.py --precision-check --zoo flipflop/0,copy/0 --trials 64
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import schurjax as sj
from schurjax.tasks import TaskBatch

CASES: dict[str, dict[str, Any]] = {
    "C1": dict(n=128, K=1024, B=32, T=60, family="single"),
    "C1dense": dict(n=128, K=1024, B=32, T=60, family="masks"),
    "G1": dict(n=128, K=8128, B=64, T=100, family="single"),
}
METHODS = ("loop", "vmap", "engine", "engine_leaky", "torch_bmm", "bare")
LEAKY_ALPHA = 0.2
"""``alpha`` of the ``engine_leaky`` method."""
EXTRA_METHODS = ("torch_bmm_1t", "engine_plain", "engine@N")  # torch bmm on one thread: less sensitive to load
N_IN, N_OUT = 3, 3
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------------------------------------------
# problem
# ---------------------------------------------------------------------------------------------------------------


def trained_like_model(n: int, seed: int = 0) -> sj.TanhRNN:
    """A random n-unit tanh RNN with a trained-like recurrent spectrum.

    ``W = 0.9 G / sqrt(n) + sum_i s_i u_i v_i^T`` with a rank-3 structured part (s = 1.6, 1.3, 1.1 on random unit
    vectors): a bulk inside the unit disc plus a few slow outlier modes, strongly nonnormal, as in trained RNNs.
    """
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(n, n)) / np.sqrt(n)
    U = np.linalg.qr(rng.normal(size=(n, 3)))[0]
    V = np.linalg.qr(rng.normal(size=(n, 3)))[0]
    W = 0.9 * G + U @ np.diag([1.6, 1.3, 1.1]) @ V.T
    return sj.TanhRNN.from_arrays(
        rng.normal(size=(n, N_IN)) / np.sqrt(N_IN),
        W,
        rng.normal(size=n) * 0.1,
        rng.normal(size=(N_OUT, n)) / np.sqrt(n),
        np.zeros(N_OUT),
    )


def make_problem(*, n: int, K: int, B: int, T: int, family: str = "single", seed: int = 0):
    """Model, SchurForm, K variants (single couplings, or random masks removing ~25 % of couplings), batch."""
    model = trained_like_model(n, seed)
    sf = sj.ordered_schur(np.asarray(model.W_rec, dtype=np.float64))
    rng = np.random.default_rng(seed + 1)
    if family == "single":
        allv = sj.ablate.single_couplings(sf)
        idx = np.sort(rng.choice(len(allv), size=min(K, len(allv)), replace=False))
        variants = allv[idx]
    elif family == "masks":
        masks = np.ones((K, n, n), dtype=np.float32)
        cm = np.asarray(sf.coupling_mask)
        for m in masks:
            m[cm & (rng.random((n, n)) < 0.25)] = 0.0
        variants = sj.ablate.from_masks(masks, sf=sf)
    else:
        raise ValueError(f"make_problem: family must be 'single' or 'masks', got {family!r}")
    batch = TaskBatch(
        jnp.asarray(rng.normal(size=(B, T, N_IN)), jnp.float32),
        jnp.asarray(rng.normal(size=(B, T, N_OUT)), jnp.float32),
        jnp.asarray(rng.random((B, T, N_OUT)) < 0.5, jnp.float32),
    )
    return model, sf, variants, batch


# ---------------------------------------------------------------------------------------------------------------
# methods: each returns (setup, run) where run() computes (loss (K,), output_distance (K,)) as NumPy
# ---------------------------------------------------------------------------------------------------------------


def _rollout_one(W, W_in, b, W_out, b_out, x):
    """One variant on B trials: x (B, T, i) -> y (B, T, o)."""
    drive = jnp.einsum("bti,ni->tbn", x, W_in) + b

    def step(h, d):
        h = jnp.tanh(h @ W.T + d)
        return h, h @ W_out.T + b_out

    _, ys = jax.lax.scan(step, jnp.zeros((x.shape[0], W.shape[0]), x.dtype), drive)
    return jnp.swapaxes(ys, 0, 1)


def _metrics(y, y0, batch):
    loss = jnp.sum(batch.mask * (y - batch.targets) ** 2) / jnp.maximum(jnp.sum(batch.mask), 1.0)
    return loss, jnp.mean((y - y0) ** 2)


@jax.jit
def _loop_step(W, W_in, b, W_out, b_out, batch, y0):
    with jax.default_matmul_precision("highest"):
        return _metrics(_rollout_one(W, W_in, b, W_out, b_out, batch.inputs), y0, batch)


@jax.jit
def _base_outputs(W, W_in, b, W_out, b_out, x):
    with jax.default_matmul_precision("highest"):
        return _rollout_one(W, W_in, b, W_out, b_out, x)


@jax.jit
def _vmap_dense(W, Q, dT, W_in, b, W_out, b_out, batch, y0):
    with jax.default_matmul_precision("highest"):
        Wk = W[None] + jnp.einsum("ij,kjl,ml->kim", Q, dT, Q)
        return jax.vmap(lambda w: _metrics(_rollout_one(w, W_in, b, W_out, b_out, batch.inputs), y0, batch))(Wk)


def _weights(model, sf):
    W = (sf.Q @ sf.T @ sf.Q.T).astype(np.float32)
    return W, model.W_in, model.b, model.W_out, model.b_out


def method_loop(model, sf, variants, batch, *, subset: int = 32):
    """One variant at a time; times ``subset`` variants (returns their metrics), rate extrapolated by the caller."""
    W, W_in, b, W_out, b_out = _weights(model, sf)
    y0 = _base_outputs(W, W_in, b, W_out, b_out, batch.inputs)
    dT = variants.delta_T(slice(0, subset))
    Q = np.asarray(sf.Q)

    def run():
        out = []
        for d in dT:
            Wk = jnp.asarray(W + (Q @ d @ Q.T).astype(np.float32))
            out.append(_loop_step(Wk, W_in, b, W_out, b_out, batch, y0))
        arr = np.asarray(jax.device_get(out), dtype=np.float64)
        return arr[:, 0], arr[:, 1]

    return run, len(dT)


def method_vmap(model, sf, variants, batch, *, slab: int = 1024):
    """Plain vmap over dense W_k (all variants, in slabs of at most ``slab``; the last slab padded with zeros)."""
    W, W_in, b, W_out, b_out = _weights(model, sf)
    y0 = _base_outputs(W, W_in, b, W_out, b_out, batch.inputs)
    K = len(variants)
    s = min(slab, K)
    dT = np.zeros((-(-K // s) * s, sf.n, sf.n), np.float32)
    dT[:K] = variants.delta_T()
    dT = jnp.asarray(dT)
    Q = jnp.asarray(sf.Q, jnp.float32)
    W = jnp.asarray(W)

    def run():
        outs = [_vmap_dense(W, Q, dT[a : a + s], W_in, b, W_out, b_out, batch, y0) for a in range(0, K, s)]
        loss = np.concatenate([np.asarray(o[0]) for o in outs])[:K]
        dist = np.concatenate([np.asarray(o[1]) for o in outs])[:K]
        return loss.astype(np.float64), dist.astype(np.float64)

    return run, K


def method_engine(model, sf, variants, batch, **kw):
    """``schurjax.evaluate`` (auto path and chunk size unless overridden)."""

    def run():
        res = sj.evaluate(model, sf, variants, batch, **kw)
        return res.loss, res.output_distance

    return run, len(variants)


@functools.partial(jax.jit, static_argnames=("K",))
def _bare_kernel(W, drive, *, K: int):
    """The machine's floor: one shared GEMM + tanh per step over all ``K * B`` states (no edits, no metrics)."""
    T, B, n = drive.shape
    WT = W.T

    def step(H, d):
        H = jnp.tanh((H.reshape(K * B, n) @ WT).reshape(K, B, n) + d[None])
        return H, None

    with jax.default_matmul_precision("highest"):
        H, _ = jax.lax.scan(step, jnp.zeros((K, B, n), drive.dtype), drive)
    return H


def method_bare(model, sf, variants, batch, *, slab: int = 512):
    """The bare kernel (:func:`_bare_kernel`) for ``len(variants)`` slots in slabs of ``slab``: no exact rollout of K
    distinct variants is faster on a machine, so the engine is reported as a fraction of it. Computes no metrics
    (returns empty arrays: nothing to cross-check)."""
    W = jnp.asarray(_weights(model, sf)[0])
    drive = jnp.einsum("bti,ni->tbn", batch.inputs, model.W_in, precision="highest") + model.b
    K = len(variants)
    s = min(slab, K)

    def run():
        out = [_bare_kernel(W, drive, K=s) for _ in range(-(-K // s))]
        jax.block_until_ready(out)
        return np.empty(0), np.empty(0)

    return run, -(-K // s) * s


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def method_torch_bmm(model, sf, variants, batch, *, slab: int = 1024, threads: int | None = None):
    """PyTorch float32: states (K, B, n), ``baddbmm`` + ``tanh`` per step over all variants at once."""
    import torch

    nthreads = threads or _cores()
    K, n = len(variants), sf.n
    W, W_in, b, W_out, b_out = (torch.from_numpy(np.array(a, dtype=np.float32)) for a in _weights(model, sf))
    Q = torch.from_numpy(np.asarray(sf.Q, dtype=np.float32))
    x = torch.from_numpy(np.array(batch.inputs, dtype=np.float32))
    tgt = torch.from_numpy(np.array(batch.targets, dtype=np.float32)).transpose(0, 1)  # (T, B, o)
    msk = torch.from_numpy(np.array(batch.mask, dtype=np.float32)).transpose(0, 1)
    dT = torch.from_numpy(variants.delta_T().astype(np.float32))
    drive = (torch.einsum("bti,ni->tbn", x, W_in) + b).contiguous()  # (T, B, n), shared
    Tn = drive.shape[0]

    def rollout(WkT):  # WkT (k, n, n) = W_k^T; returns outputs (T, k, B, o)
        k = WkT.shape[0]
        H = torch.zeros(k, drive.shape[1], n)
        ys = []
        for t in range(Tn):
            H = torch.tanh(torch.baddbmm(drive[t].expand(k, -1, -1), H, WkT))
            ys.append(torch.matmul(H, W_out.T) + b_out)
        return torch.stack(ys)

    def run():
        torch.set_num_threads(nthreads)
        with torch.no_grad():
            y0 = rollout(W.T.unsqueeze(0).contiguous())[:, 0]
            losses, dists = [], []
            for a in range(0, K, slab):
                d = dT[a : a + slab]
                WkT = (W.unsqueeze(0) + torch.matmul(torch.matmul(Q, d), Q.T)).transpose(1, 2).contiguous()
                y = rollout(WkT)  # (T, k, B, o)
                losses.append((msk[:, None] * (y - tgt[:, None]) ** 2).sum(dim=(0, 2, 3)) / msk.sum().clamp(min=1))
                dists.append(((y - y0[:, None]) ** 2).mean(dim=(0, 2, 3)))
            return torch.cat(losses).double().numpy(), torch.cat(dists).double().numpy()

    return run, K


# ---------------------------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------------------------


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """CPU model, core count, JAX device, versions, load average."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "schurjax": sj.__version__,
    }
    try:
        import jaxlib

        versions["jaxlib"] = jaxlib.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch_available():
        import torch

        versions["torch"] = torch.__version__
    dev = jax.devices()[0]
    return {
        "cpu_model": model,
        "cores": _cores(),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "versions": versions,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def leaky(model) -> sj.RateRNN:
    """The same weights as a leaky rate network (``alpha = LEAKY_ALPHA``, tanh, rate form)."""
    return sj.RateRNN.from_arrays(
        W_in=model.W_in, W_rec=model.W_rec, b=model.b, W_out=model.W_out, b_out=model.b_out, alpha=LEAKY_ALPHA
    )


def build_methods(names, model, sf, variants, batch, *, loop_subset: int = 32, engine_kw: dict | None = None):
    """name -> (run, n_variants_computed_by_one_run)."""
    makers = {
        "loop": lambda: method_loop(model, sf, variants, batch, subset=min(loop_subset, len(variants))),
        "vmap": lambda: method_vmap(model, sf, variants, batch),
        "engine": lambda: method_engine(model, sf, variants, batch, **(engine_kw or {})),
        "engine_plain": lambda: method_engine(model, sf, variants, batch, **{**(engine_kw or {}), "deviation": False}),
        "engine_leaky": lambda: method_engine(leaky(model), sf, variants, batch, **(engine_kw or {})),
        "torch_bmm": lambda: method_torch_bmm(model, sf, variants, batch),
        "torch_bmm_1t": lambda: method_torch_bmm(model, sf, variants, batch, threads=1),
        "bare": lambda: method_bare(model, sf, variants, batch),
    }
    out = {}
    for name in names:
        if name.startswith("engine@") and name[7:].isdigit():  # the engine at a fixed chunk size
            kw = {**(engine_kw or {}), "compiled_chunk": int(name[7:])}
            makers[name] = functools.partial(method_engine, model, sf, variants, batch, **kw)
        if name not in makers:
            raise ValueError(f"sweep_throughput: unknown method {name!r}; expected some of {METHODS + EXTRA_METHODS}")
        if name.startswith("torch") and not torch_available():
            continue
        out[name] = makers[name]()
    return out


def measure(methods: dict, *, repeats: int = 3) -> dict[str, dict[str, Any]]:
    """Warm up every method once, then time each ``repeats`` times, interleaved; best time -> variants/s."""
    results: dict[str, dict[str, Any]] = {}
    for name, (run, count) in methods.items():
        t0 = time.perf_counter()
        loss, dist = run()
        results[name] = {
            "warmup_s": time.perf_counter() - t0,
            "times_s": [],
            "variants_timed": count,
            "loss": loss,
            "output_distance": dist,
        }
    for _ in range(repeats):
        for name, (run, _count) in methods.items():
            t0 = time.perf_counter()
            run()
            results[name]["times_s"].append(time.perf_counter() - t0)
    for r in results.values():
        r["best_s"] = min(r["times_s"]) if r["times_s"] else r["warmup_s"]
        r["var_per_s"] = r["variants_timed"] / r["best_s"]
    return results


def _case_problem(case: str, n, K, B, T, seed: int):
    """The sizes of ``case`` (flags override them) and its problem ``(model, sf, variants, batch)``."""
    cfg = dict(CASES[case])
    for key, val in (("n", n), ("K", K), ("B", B), ("T", T)):
        if val is not None:
            cfg[key] = int(val)
    return cfg, make_problem(n=cfg["n"], K=cfg["K"], B=cfg["B"], T=cfg["T"], family=cfg["family"], seed=seed)


def run_case(
    case: str = "C1",
    *,
    n=None,
    K=None,
    B=None,
    T=None,
    methods=METHODS,
    repeats: int = 3,
    loop_subset: int = 32,
    seed: int = 0,
    engine_kw: dict | None = None,
) -> dict[str, Any]:
    """Build the case (flags override its sizes), measure the methods, cross-check their results; JSON-able dict."""
    if case not in CASES:
        raise ValueError(f"sweep_throughput: case must be one of {tuple(CASES)}, got {case!r}")
    cfg, (model, sf, variants, batch) = _case_problem(case, n, K, B, T, seed)
    cfg["K"] = len(variants)
    info = machine_info()
    ms = build_methods(methods, model, sf, variants, batch, loop_subset=loop_subset, engine_kw=engine_kw)
    res = measure(ms, repeats=repeats)
    # cross-check: every method's losses agree with the engine's on the variants it computed
    ref = res.get("engine")
    figures = {}
    for name, r in res.items():
        entry = {k: r[k] for k in ("var_per_s", "best_s", "times_s", "warmup_s", "variants_timed")}
        if ref is not None and len(r["loss"]) and name != "engine_leaky":  # (leaky: another network, other losses)
            m = len(r["loss"])
            rel = np.abs(r["loss"] - ref["loss"][:m]) / np.abs(ref["loss"][:m])
            entry["max_rel_loss_diff_vs_engine"] = float(np.max(rel))
        figures[name] = entry
    torch_rate = figures.get("torch_bmm", {}).get("var_per_s")
    ratios = {f"{name}/torch_bmm": f["var_per_s"] / torch_rate for name, f in figures.items() if torch_rate}
    bare = figures.get("bare", {}).get("var_per_s")
    if bare:
        ratios.update({f"{name}/bare": f["var_per_s"] / bare for name, f in figures.items() if name != "bare"})
    best_torch = max((f["var_per_s"] for name, f in figures.items() if name.startswith("torch")), default=None)
    if best_torch:
        ratios.update({f"{name}/best_torch": f["var_per_s"] / best_torch for name, f in figures.items()})
    if "engine" in figures and "engine_leaky" in figures:  # alpha = LEAKY_ALPHA against alpha = 1, same run
        ratios["engine_leaky/engine"] = figures["engine_leaky"]["var_per_s"] / figures["engine"]["var_per_s"]
    path = sj.engine.choose_path(variants.max_nnz, sf.n)
    chunk = sj.engine.auto_chunk_size(path, n=sf.n, B=cfg["B"], T=cfg["T"], n_out=N_OUT, r=max(1, variants.max_nnz))
    return {
        "case": case,
        "config": cfg,
        "engine": {"path": path, "compiled_chunk": chunk, **(engine_kw or {})},
        "machine": info,
        "loadavg_1min_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "figures": figures,
        "ratios": ratios,
        "leaky_alpha": LEAKY_ALPHA,
        "notes": "loop: rate extrapolated from the timed subset (variants_timed); best of the interleaved repeats",
    }


def format_table(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"case {result['case']}: n={cfg['n']} K={cfg['K']} B={cfg['B']} T={cfg['T']} ({cfg['family']}); "
        f"engine path={result['engine']['path']} chunk={result['engine']['compiled_chunk']}; "
        f"{result['machine']['cpu_model']}, {result['machine']['cores']} cores, {result['machine']['device']}",
        f"{'method':<14}{'var/s':>10}{'best s':>10}{'vs torch_bmm':>14}{'vs best torch':>15}{'max rel dloss':>15}"
        f"{'vs bare':>9}",
    ]
    for name, f in result["figures"].items():
        ratio = result["ratios"].get(f"{name}/torch_bmm")
        best = result["ratios"].get(f"{name}/best_torch")
        bare = result["ratios"].get(f"{name}/bare")
        lines.append(
            f"{name:<14}{f['var_per_s']:>10.0f}{f['best_s']:>10.3f}{(f'{ratio:.2f}x' if ratio else '-'):>14}"
            f"{(f'{best:.2f}x' if best else '-'):>15}{f.get('max_rel_loss_diff_vs_engine', float('nan')):>15.1e}"
            f"{(f'{100 * bare:.0f}%' if bare else '-'):>9}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# memory: all single couplings of an n-unit network, peak RSS measured in a child process
def _memory_child(n: int, B: int, T: int, seed: int) -> None:
    import resource

    model = trained_like_model(n, seed)
    sf = sj.ordered_schur(np.asarray(model.W_rec, dtype=np.float64))
    variants = sj.ablate.single_couplings(sf)
    rng = np.random.default_rng(seed + 1)
    batch = TaskBatch(
        jnp.asarray(rng.normal(size=(B, T, N_IN)), jnp.float32),
        jnp.asarray(rng.normal(size=(B, T, N_OUT)), jnp.float32),
        jnp.asarray(rng.random((B, T, N_OUT)) < 0.5, jnp.float32),
    )
    t0 = time.perf_counter()
    res = sj.evaluate(model, sf, variants, batch)
    dt = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "K": len(variants),
                "seconds": dt,
                "peak_rss_kib_self": peak_kib,
                "finite": bool(np.all(np.isfinite(res.loss))),
            }
        )
    )


def memory_sweep(n: int = 256, B: int = 16, T: int = 20, seed: int = 0) -> dict[str, Any]:
    """Run the all-single-couplings sweep in a subprocess; peak RSS from ``getrusage(RUSAGE_CHILDREN)``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import sweep_throughput as s; "
        f"s._memory_child({n}, {B}, {T}, {seed})"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "case": "memory",
        "config": {"n": n, "B": B, "T": T, "K": child["K"], "family": "single (all couplings)"},
        "peak_rss_bytes": int(max(peak, child["peak_rss_kib_self"]) * 1024),
        "peak_rss_children_before_kib": before,
        "seconds": child["seconds"],
        "variants_per_s": child["K"] / child["seconds"],
        "all_finite": child["finite"],
        "limit_bytes": 4 * 10**9,
        "machine": machine_info(),
    }


# ---------------------------------------------------------------------------------------------------------------
# precision: error of each rollout form / matmul precision against float64
# ---------------------------------------------------------------------------------------------------------------

FORMS = {
    "default": {},
    "deviation, no float64 re-run": {"refine": False},
    "plain (deviation=False)": {"deviation": False},
}
ERROR_METRICS = ("delta_loss", "output_distance", "hidden_distance", "loss")


def relative_errors(res, ref) -> dict[str, np.ndarray]:
    """Per variant and metric: ``|x - ref| / max(|ref|, 1e-5 base_loss)`` (the error the engine's bound uses)."""
    floor = 1e-5 * ref.base_loss
    return {
        m: np.abs(getattr(res, m) - getattr(ref, m)) / np.maximum(np.abs(getattr(ref, m)), floor) for m in ERROR_METRICS
    }


def _form_rows(model, sf, variants, batch, precisions) -> list[dict[str, Any]]:
    ref = sj.evaluate(model, sf, variants, batch, dtype=jnp.float64)
    rows = []
    for prec in precisions:
        for form, kw in FORMS.items():
            kw = dict(kw)
            saved = sj.engine.REFINE_CONDITION
            if kw.pop("refine", True) is False:
                sj.engine.REFINE_CONDITION = np.inf
            try:
                res = sj.evaluate(model, sf, variants, batch, precision=prec, **kw)
            finally:
                sj.engine.REFINE_CONDITION = saved
            row = {"precision": prec, "form": form}
            for name, err in relative_errors(res, ref).items():
                row[f"{name}_rel_err_median"] = float(np.median(err))
                row[f"{name}_rel_err_max"] = float(np.max(err))
            rows.append(row)
    return rows


def precision_check(
    case: str = "C1",
    *,
    n=None,
    K=None,
    B=None,
    T=None,
    seed: int = 0,
    zoo=(),
    trials: int = 64,
    precisions=("highest", "high", "default", "tf32"),
) -> dict[str, Any]:
    """Relative error of each rollout form and matmul precision against float64, per metric (median / max).

    The reference is ``evaluate(..., dtype=jnp.float64)`` (checked against an independent NumPy float64 rollout in
    tests/test_precision.py). Problems: the case (all its variants) and, for each ``zoo`` entry ``"task/seed"``,
    every single coupling of that shipped network on ``trials`` trials of its task. On the CPU XLA computes float32
    dots in float32 whatever the requested precision, so only "highest" is run there; on a GPU every precision is.
    """
    cfg, (model, sf, variants, batch) = _case_problem(case, n, K, B, T, seed)
    cfg["K"] = len(variants)
    if jax.devices()[0].platform == "cpu":
        precisions = ("highest",)
    problems = {case: _form_rows(model, sf, variants, batch, precisions)}
    for spec in zoo:
        task_name, s = spec.split("/")
        zmodel = sj.zoo.load(task_name, seed=int(s))
        task = sj.tasks.get(task_name, **sj.zoo.metadata(task_name, int(s))["task"]["params"])
        zsf = sj.ordered_schur(np.asarray(zmodel.W_rec, dtype=np.float64))
        zbatch = task.sample(jax.random.key(seed + 1), trials)
        problems[f"zoo:{spec}"] = _form_rows(zmodel, zsf, sj.ablate.single_couplings(zsf), zbatch, precisions)
    return {
        "case": case,
        "config": cfg,
        "device": machine_info()["device"],
        "machine": machine_info(),
        "reference": "evaluate(dtype=float64)",
        "error": "|x - ref| / max(|ref|, 1e-5 base_loss)",
        "zoo_trials": trials,
        "problems": problems,
    }


def format_precision(result: dict[str, Any]) -> str:
    lines = [
        f"precision check ({result['device']}): relative error vs float64, |x - ref| / max(|ref|, 1e-5 "
        "base_loss), median / max over variants"
    ]
    for problem, rows in result["problems"].items():
        lines.append(f"{problem}:")
        lines.append(f"  {'precision':<10}{'form':<30}" + "".join(f"{m:>22}" for m in ERROR_METRICS))
        for r in rows:
            cells = "".join(f"{r[f'{m}_rel_err_median']:>11.1e} /{r[f'{m}_rel_err_max']:>8.1e}" for m in ERROR_METRICS)
            lines.append(f"  {r['precision']:<10}{r['form']:<30}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="C1", choices=sorted(CASES))
    p.add_argument("--n", type=int)
    p.add_argument("--K", type=int)
    p.add_argument("--B", type=int)
    p.add_argument("--T", type=int)
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS + EXTRA_METHODS)}"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loop-subset", type=int, default=32, help="variants timed for the one-at-a-time loop")
    p.add_argument("--chunk-size", default=None, help="engine chunk size (default auto)")
    p.add_argument("--path", default=None, choices=["auto", "shared", "dense"], help="engine path (default auto)")
    p.add_argument("--memory", action="store_true", help="run the peak-RSS sweep of all single couplings instead")
    p.add_argument("--precision-check", action="store_true", help="measure each form's error vs float64 instead")
    p.add_argument("--zoo", default="", help="precision check: comma list of zoo networks task/seed (all couplings)")
    p.add_argument("--trials", type=int, default=64, help="precision check: trials per zoo network")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/sweep_<case>.json)")
    a = p.parse_args(argv)
    if a.memory:
        result = memory_sweep(n=a.n or 256, B=a.B or 16, T=a.T or 20, seed=a.seed)
        print(
            f"memory: n={result['config']['n']} K={result['config']['K']} B={result['config']['B']} "
            f"T={result['config']['T']}: peak RSS {result['peak_rss_bytes'] / 2**30:.2f} GiB, "
            f"{result['seconds']:.1f} s ({result['variants_per_s']:.0f} var/s)"
        )
        out = Path(a.out) if a.out else RESULTS_DIR / "sweep_memory.json"
    elif a.precision_check:
        result = precision_check(
            a.case, n=a.n, K=a.K, B=a.B, T=a.T, seed=a.seed, zoo=[z for z in a.zoo.split(",") if z], trials=a.trials
        )
        print(format_precision(result))
        out = Path(a.out) if a.out else RESULTS_DIR / "sweep_precision.json"
    else:
        kw: dict[str, Any] = {}
        if a.chunk_size:
            kw["compiled_chunk"] = a.chunk_size if a.chunk_size == "auto" else int(a.chunk_size)
        if a.path:
            kw["path"] = a.path
        result = run_case(
            a.case,
            n=a.n,
            K=a.K,
            B=a.B,
            T=a.T,
            methods=[m for m in a.methods.split(",") if m],
            repeats=a.repeats,
            loop_subset=a.loop_subset,
            seed=a.seed,
            engine_kw=kw,
        )
        print(format_table(result))
        out = Path(a.out) if a.out else RESULTS_DIR / f"sweep_{a.case}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
