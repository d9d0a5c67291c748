"""Fixed points of thousands of ablated networks: throughput, agreement with SciPy, solver choice, flip-flop counts.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

* ``single``: ``sj.dynamics.fixed_points`` for every single-coupling variant of a zoo network (n = 64) at zero input,
  starts from the task's trials; variants per second, everything included (trajectories, base, search, float64
  polish, host classification and matching); what the removals do to the attractors.
* ``scipy``: for a random sample of those variants, SciPy's ``optimize.root`` (MINPACK hybrid Powell, float64,
  analytic Jacobian) from the same starts; the distinct roots of both must coincide to 1e-6.
* ``solvers``: one chunk of variants × starts solved by optimistix ``Newton`` (the default), optimistix
  ``LevenbergMarquardt``, a hand-written Newton (``lax.while_loop`` + ``jnp.linalg.solve``), and optimistix Newton
  searching in float64: time and points found.
* ``sine``: at constant frequency cues, the leading eigenvalue's angle at the central fixed point vs the target ω,
  unablated and after ``T -> D``.
* ``flipflop``: base attractors of the four flip-flop zoo networks at zero input, and after removing all nonnormal
  couplings (``T -> D``) or a random edit of the same Frobenius norm.

    python benchmarks/fixed_points.py                    # all parts, writes benchmarks/results/fixed_points.json
    python benchmarks/fixed_points.py --quick            # small sizes (smoke test)
"""

from __future__ import annotations

import argparse
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
from scipy import optimize

import schurjax as sj
from schurjax.dynamics import finder, points

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, JAX device, versions, load average."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name:")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    import lineax
    import optimistix

    dev = jax.devices()[0]
    return {
        "cpu_model": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "optimistix": optimistix.__version__,
            "lineax": lineax.__version__,
            "schurjax": sj.__version__,
        },
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def write_record(rec: dict[str, Any], out: str | Path, markdown) -> dict[str, Any]:
    """Add the load after the run, write ``rec`` as JSON to ``out`` and print ``markdown(rec)``."""
    rec["loadavg_1min_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1, default=float) + "\n")
    print(markdown(rec))
    print(f"wrote {out}", file=sys.stderr)
    return rec


def _zoo(task: str, seed: int):
    model = sj.zoo.load(task, seed=seed)
    return model, sj.ordered_schur(np.asarray(model.W_rec, np.float64)), sj.zoo.task(task)


def run_single(
    task: str = "flipflop", seed: int = 0, *, n_starts: int = 64, limit: int | None = None, key: int = 0
) -> tuple[dict[str, Any], Any]:
    """Fixed points of all (or the first ``limit``) single-coupling variants; returns (record, FixedPoints)."""
    model, sf, tk = _zoo(task, seed)
    v = sj.ablate.single_couplings(sf)
    if limit is not None:
        v = v[: int(limit)]
    t0 = time.perf_counter()
    fp = sj.dynamics.fixed_points(model, sf, v, key=jax.random.key(key), task=tk, n_starts=n_starts)
    sec = time.perf_counter() - t0
    cols = fp.columns()
    hist = {int(a): int(b) for a, b in zip(*np.unique(cols["n_stable"], return_counts=True), strict=True)}
    n_per = fp.starts_of(sf.reconstruct(), np.asarray(model.b, np.float64)).shape[0]
    rec = {
        "task": task,
        "seed": seed,
        "n": sf.n,
        "K": len(v),
        "n_starts": n_starts,
        "starts_per_variant": int(n_per),
        "seconds": sec,
        "var_per_s": len(v) / sec,
        "base": {
            "n_points": len(fp.base),
            "n_stable": int(fp.base.stable.sum()),
            "kinds": {k: int((fp.base.kind == k).sum()) for k in sj.dynamics.KINDS},
        },
        "n_stable_histogram": hist,
        "variants_losing_an_attractor": int((fp.lost > 0).sum()),
        "variants_gaining_an_attractor": int((fp.gained > 0).sum()),
        "variants_moving_an_attractor": int((cols["n_moved"] > 0).sum()),
        "max_displacement_quantiles": {
            q: float(np.nanquantile(fp.max_displacement, float(q))) for q in ("0.5", "0.9", "0.99", "1.0")
        },
        "max_residual": float(np.nanmax(cols["max_residual"])),
        "loadavg_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    return rec, fp


def scipy_points(W: np.ndarray, u: np.ndarray, starts: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Distinct roots of ``tanh(W h + u) = h`` found by SciPy's hybrid Powell method (float64) from ``starts``."""
    n = W.shape[0]

    def F(h):
        return np.tanh(W @ h + u) - h

    def J(h):
        return (1.0 - np.tanh(W @ h + u) ** 2)[:, None] * W - np.eye(n)

    out: list[np.ndarray] = []
    for s in starts:
        r = optimize.root(F, s, jac=J, method="hybr", options={"xtol": 1e-13})
        if np.linalg.norm(F(r.x)) <= tol and not any(np.linalg.norm(r.x - o) < 1e-5 for o in out):
            out.append(r.x)
    return np.array(out).reshape(-1, n)


def scipy_check(fp, model, sf, variants, *, sample: int = 16, seed: int = 0) -> dict[str, Any]:
    """Compare ``fp`` with SciPy from the same starts on a random sample of variants."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(variants), min(sample, len(variants)), replace=False))
    u = np.asarray(model.b, np.float64)
    dT = variants.delta_T(idx)
    rows = []
    t_scipy = 0.0
    for q, k in enumerate(idx):
        W = sf.Q @ (sf.T + dT[q]) @ sf.Q.T
        t0 = time.perf_counter()
        ref = scipy_points(W, u, fp.starts_of(W, u))
        t_scipy += time.perf_counter() - t0
        ours = fp.points[k]
        d = np.linalg.norm(ours[:, None] - ref[None], axis=-1) if len(ours) and len(ref) else np.zeros((0, 0))
        rows.append(
            {
                "variant": int(k),
                "ours": int(len(ours)),
                "scipy": int(len(ref)),
                "max_dist_ours_to_scipy": float(d.min(axis=1).max()) if d.size else None,
                "max_dist_scipy_to_ours": float(d.min(axis=0).max()) if d.size else None,
                "max_residual_ours": float(fp.sets[k].residual.max()) if len(ours) else None,
            }
        )
    same = all(r["ours"] == r["scipy"] for r in rows)
    worst = max(max(r["max_dist_ours_to_scipy"] or 0, r["max_dist_scipy_to_ours"] or 0) for r in rows)
    return {
        "sample": [int(i) for i in idx],
        "rows": rows,
        "same_sets": bool(same),
        "max_distance": float(worst),
        "agree_1e-6": bool(same and worst <= 1e-6),
        "scipy_seconds": t_scipy,
        "scipy_var_per_s": len(idx) / t_scipy,
    }


# ---------------------------------------------------------------------------------------------------------------
# Solver comparison


def _hand_newton(W32, W64, u32, u64, starts, *, max_steps: int = 40, polish: int = 4):
    """A hand-written batched Newton: float32 while loop (max-norm step < 1e-5), then ``polish`` float64 steps."""

    def newton_f32(W, h):
        def body(c):
            h, i, _ = c
            t = jnp.tanh(W @ h + u32)
            J = (1 - t * t)[:, None] * W - jnp.eye(h.shape[0], dtype=h.dtype)
            d = jnp.linalg.solve(J, t - h)
            return h - d, i + 1, jnp.max(jnp.abs(d))

        return jax.lax.while_loop(lambda c: (c[1] < max_steps) & (c[2] > 1e-5), body, (h, 0, jnp.inf))[0]

    def newton_f64(W, h):
        def body(_, h):
            t = jnp.tanh(W @ h + u64)
            J = (1 - t * t)[:, None] * W - jnp.eye(h.shape[0], dtype=h.dtype)
            return h - jnp.linalg.solve(J, t - h)

        return jax.lax.fori_loop(0, polish, body, h)

    def one(Wa, Wb, h0):
        return newton_f64(Wb, newton_f32(Wa, h0.astype(jnp.float32)).astype(jnp.float64))

    return jax.vmap(lambda Wa, Wb: jax.vmap(lambda h: one(Wa, Wb, h))(starts))(W32, W64)


def solver_comparison(fp, sf, model, variants, *, chunk: int = 32, repeats: int = 2) -> dict[str, Any]:
    """Time one chunk of variants × starts with each solver; count the distinct points each finds."""
    k = min(chunk, len(variants))
    W0 = sf.reconstruct()
    Wk = W0[None] + sf.Q @ variants.delta_T(np.arange(k)) @ sf.Q.T
    u = np.asarray(model.b, np.float64)
    starts = np.concatenate([fp.base.points, fp.starts])  # shared starts (no per-variant relaxed ones here)
    out: dict[str, Any] = {"variants": k, "starts": int(starts.shape[0])}

    def count(h):
        res = points._residuals(Wk, u, h)
        ok = np.isfinite(res) & (res <= 1e-6)
        return int(ok.sum()), int(points._distinct(h, ok, 1e-5).sum())

    cases = {
        "optimistix_newton": dict(solver="newton", search_dtype=jnp.float32),
        "optimistix_newton_f64_search": dict(solver="newton", search_dtype=jnp.float64),
        "optimistix_levenberg_marquardt_f64": dict(solver="lm", search_dtype=jnp.float64),
    }
    for name, kw in cases.items():
        finder.solve_points(Wk, u, starts, **kw)  # compile
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            h = finder.solve_points(Wk, u, starts, **kw)
            ts.append(time.perf_counter() - t0)
        conv, distinct = count(h)
        out[name] = {
            "seconds": min(ts),
            "searches_per_s": k * starts.shape[0] / min(ts),
            "converged": conv,
            "distinct_points": distinct,
        }
    with jax.enable_x64(True):
        f = jax.jit(_hand_newton)
        args = (
            jnp.asarray(Wk, jnp.float32),
            jnp.asarray(Wk),
            jnp.asarray(u, jnp.float32),
            jnp.asarray(u),
            jnp.asarray(starts, jnp.float32),
        )
        jax.block_until_ready(f(*args))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            h = np.asarray(jax.block_until_ready(f(*args)), np.float64)
            ts.append(time.perf_counter() - t0)
    conv, distinct = count(h)
    out["hand_written_newton"] = {
        "seconds": min(ts),
        "searches_per_s": k * starts.shape[0] / min(ts),
        "converged": conv,
        "distinct_points": distinct,
    }
    return out


# ---------------------------------------------------------------------------------------------------------------
# Flip-flop attractors


def flipflop_counts(seeds=(0, 1, 2, 3), *, controls: int = 4, key: int = 0) -> list[dict[str, Any]]:
    """Per flip-flop zoo seed: base fixed points at zero input, after ``T -> D`` and after matched-norm edits."""
    rows = []
    for s in seeds:
        model, sf, tk = _zoo("flipflop", s)
        tod = sj.ablate.all_nonnormal(sf)
        v = sj.ablate.Variants.concat(tod, sj.ablate.matched_norm(jax.random.key(100 + s), sf, tod, n_per=controls))
        fp = sj.dynamics.fixed_points(model, sf, v, key=jax.random.key(key), task=tk)
        rows.append(
            {
                "seed": s,
                "base_points": len(fp.base),
                "base_stable": int(fp.base.stable.sum()),
                "base_unstable_dims": np.bincount(fp.base.n_unstable).tolist(),
                "tod_points": int(fp.n_points[0]),
                "tod_stable": int(fp.n_stable[0]),
                "tod_lost": int(fp.lost[0]),
                "tod_gained": int(fp.gained[0]),
                "tod_max_displacement": float(fp.max_displacement[0]),
                "tod_delta_norm": float(tod.delta_norm[0]),
                "control_stable": fp.n_stable[1:].tolist(),
                "control_lost": fp.lost[1:].tolist(),
                "match_radius": fp.match_radius,
            }
        )
    return rows


def sine_frequencies(seeds=(0, 1, 2, 3), cues=(0, 25, 50), *, key: int = 0) -> list[dict[str, Any]]:
    """Sine zoo networks at constant frequency cues: the leading eigenvalue's angle at the fixed point nearest the
    trajectories (the focus inside the cycle) against the target ω, for the base and for ``T -> D``."""
    rows = []
    for s in seeds:
        model, sf, tk = _zoo("sine", s)
        tod = sj.ablate.all_nonnormal(sf)
        for j in cues:
            batch = tk.batch_for(jnp.full((8,), j))
            x = np.asarray(batch.inputs[0, 0], np.float64)
            fp = sj.dynamics.fixed_points(model, sf, tod, key=jax.random.key(key), x=x, batch=batch)
            ref = fp.reference
            rows.append(
                {
                    "seed": s,
                    "cue": j,
                    "omega": float(tk.frequencies[j]),
                    "base_points": len(fp.base),
                    "base_ref_kind": str(fp.base.kind[ref]) if ref >= 0 else None,
                    "base_ref_freq": float(fp.base.freq[ref]) if ref >= 0 else None,
                    "base_ref_radius": float(fp.base.radius[ref]) if ref >= 0 else None,
                    "tod_points": int(fp.n_points[0]),
                    "tod_stable": int(fp.n_stable[0]),
                    "tod_freq": float(fp.leading_freq[0]),
                    "tod_radius": float(fp.leading_radius[0]),
                }
            )
    return rows


def format_markdown(rec: dict[str, Any]) -> str:
    s = rec.get("single")
    lines = (
        []
        if s is None
        else [
            f"single couplings ({s['task']} seed {s['seed']}, n = {s['n']}, K = {s['K']}, "
            f"{s['starts_per_variant']} starts per variant): {s['seconds']:.1f} s, "
            f"{s['var_per_s']:.1f} var/s"
        ]
    )
    if "scipy" in rec:
        c = rec["scipy"]
        lines.append(
            f"SciPy check on {len(c['sample'])} variants: same sets {c['same_sets']}, max distance "
            f"{c['max_distance']:.2e}"
        )
    if "solvers" in rec:
        for name, r in rec["solvers"].items():
            if isinstance(r, dict):
                lines.append(
                    f"  {name:32s} {r['seconds']:.2f} s  {r['searches_per_s']:.0f} searches/s  "
                    f"distinct {r['distinct_points']}"
                )
    for r in rec.get("sine", []):
        lines.append(
            f"sine seed {r['seed']} cue {r['cue']} (omega {r['omega']:.2f}): base {r['base_ref_kind']} "
            f"freq {r['base_ref_freq']:.3f} |lam| {r['base_ref_radius']:.2f}; T->D freq {r['tod_freq']:.3f} "
            f"|lam| {r['tod_radius']:.2f}"
        )
    for r in rec.get("flipflop", []):
        lines.append(
            f"flipflop seed {r['seed']}: base {r['base_stable']} stable / {r['base_points']}; T->D "
            f"{r['tod_stable']} stable / {r['tod_points']} (lost {r['tod_lost']}); matched-norm controls "
            f"stable {r['control_stable']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--task", default="flipflop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-starts", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="only the first LIMIT single couplings")
    p.add_argument("--scipy-sample", type=int, default=16)
    p.add_argument("--parts", default="single,scipy,solvers,flipflop,sine")
    p.add_argument("--out", default=str(RESULTS / "fixed_points.json"))
    a = p.parse_args(argv)
    parts = set(a.parts.split(","))
    if a.quick:
        a.limit, a.n_starts, a.scipy_sample = a.limit or 8, min(a.n_starts, 8), min(a.scipy_sample, 2)
    rec: dict[str, Any] = {"machine": machine_info(), "quick": a.quick}
    if parts & {"single", "scipy", "solvers"}:
        single, fp = run_single(a.task, a.seed, n_starts=a.n_starts, limit=a.limit)
        rec["single"] = single
        model, sf, _ = _zoo(a.task, a.seed)
        v = sj.ablate.single_couplings(sf)[: single["K"]]
    if "scipy" in parts:
        rec["scipy"] = scipy_check(fp, model, sf, v, sample=a.scipy_sample)
    if "solvers" in parts:
        rec["solvers"] = solver_comparison(fp, sf, model, v, chunk=4 if a.quick else 32, repeats=1 if a.quick else 2)
    if "flipflop" in parts:
        rec["flipflop"] = flipflop_counts((0,) if a.quick else (0, 1, 2, 3), controls=1 if a.quick else 4)
    if "sine" in parts:
        rec["sine"] = sine_frequencies((0,) if a.quick else (0, 1, 2, 3), (25,) if a.quick else (0, 25, 50))
    return write_record(rec, a.out, format_markdown)


if __name__ == "__main__":
    main()
