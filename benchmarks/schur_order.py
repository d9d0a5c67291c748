"""Benchmark: ordered real Schur form (``schurjax.ordered_schur``) against SciPy's unordered ``schur``.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).

Both are timed on the same Gaussian matrices ``W = randn(n, n) / sqrt(n)`` in one run, interleaved repeat by repeat
so that machine load hits both alike. Target: ordered <= 2x unordered at n = 512 (median over repeats).

Usage:
    python benchmarks/schur_order.py                       # n = 64, 128, 256, 512; writes benchmarks/results/
    python benchmarks/schur_order.py --sizes 64,128 --repeats 3 --out /tmp/schur_order.json
    OPENBLAS_NUM_THREADS=1 python benchmarks/schur_order.py   # stable figures on a shared, loaded machine

On a machine shared with other jobs, multi-threaded OpenBLAS times of ``dgees`` swing by 10x from repeat to repeat
(thread oversubscription); pinning BLAS to one thread gives reproducible ratios. The JSON records the thread
environment variables that were set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.linalg

from schurjax.schur import ordered_schur

__all__ = ["DEFAULT_OUT", "bench_size", "machine_info", "run", "format_table", "main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "schur_order.json"
TARGET_RATIO = 2.0


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, Python/NumPy/SciPy versions and BLAS, for the JSON record."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]  # type: ignore[index]
    except Exception:  # pragma: no cover - older numpy
        blas = "unknown"
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": blas,
        "threads_env": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
        },
    }


def bench_size(n: int, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """Time unordered ``scipy.linalg.schur(output="real")`` and ``ordered_schur`` on one (n, n) Gaussian matrix.

    Args:
        n: matrix size.
        repeats: timed repetitions of each (after one untimed warm-up call of each), interleaved.
        seed: NumPy seed of the matrix.

    Returns:
        dict with n, repeats, the times in seconds (lists, min, median), ``ratio_median`` and ``ratio_min``
        (ordered / unordered), the number of 2x2 blocks and a reconstruction residual.

    Example:
        >>> bench_size(32, repeats=1)["ratio_median"] > 0
        True
    """
    if n < 1 or repeats < 1:
        raise ValueError(f"bench_size: n and repeats must be >= 1, got n={n}, repeats={repeats}")
    W = np.random.default_rng(seed).standard_normal((n, n)) / np.sqrt(n)
    scipy.linalg.schur(W, output="real")
    sf = ordered_schur(W)
    t_un: list[float] = []
    t_ord: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        scipy.linalg.schur(W, output="real")
        t1 = time.perf_counter()
        ordered_schur(W)
        t2 = time.perf_counter()
        t_un.append(t1 - t0)
        t_ord.append(t2 - t1)
    med_un, med_ord = statistics.median(t_un), statistics.median(t_ord)
    return {
        "n": n,
        "repeats": repeats,
        "seed": seed,
        "unordered_s": t_un,
        "ordered_s": t_ord,
        "unordered_median_s": med_un,
        "ordered_median_s": med_ord,
        "unordered_min_s": min(t_un),
        "ordered_min_s": min(t_ord),
        "ratio_median": med_ord / med_un,
        "ratio_min": min(t_ord) / min(t_un),
        "n_pairs": sum(s == 2 for _, s in sf.blocks),
        "residual": float(np.linalg.norm(sf.reconstruct() - W) / np.linalg.norm(W)),
    }


def run(
    sizes: Sequence[int] = (64, 128, 256, 512),
    repeats: int = 5,
    seed: int = 0,
    out: str | Path | None = DEFAULT_OUT,
) -> dict[str, Any]:
    """Run the benchmark at every size; write JSON to ``out`` (None: don't write) and return the record.

    Example:
        >>> rec = run(sizes=(16,), repeats=1, out=None)
        >>> rec["results"][0]["n"]
        16
    """
    results = [bench_size(int(n), repeats=repeats, seed=seed + k) for k, n in enumerate(sizes)]
    big = max(results, key=lambda r: r["n"])
    record = {
        "benchmark": "schur_order",
        "description": "ordered_schur vs scipy.linalg.schur(output='real'), same matrices, interleaved repeats",
        "target": f"ordered <= {TARGET_RATIO}x unordered at n = 512 (median)",
        "target_met": bool(big["ratio_median"] <= TARGET_RATIO) if big["n"] == 512 else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "results": results,
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
    return record


def format_table(record: dict[str, Any]) -> str:
    """The record as a fixed-width text table (median and min times in ms, ratio ordered / unordered)."""
    head = f"{'n':>6} {'unordered ms':>13} {'ordered ms':>11} {'ratio':>6}   {'min: unord':>10} {'ord':>8} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for r in record["results"]:
        lines.append(
            f"{r['n']:>6} {1e3 * r['unordered_median_s']:>13.2f} {1e3 * r['ordered_median_s']:>11.2f} "
            f"{r['ratio_median']:>6.2f}   {1e3 * r['unordered_min_s']:>10.2f} {1e3 * r['ordered_min_s']:>8.2f} "
            f"{r['ratio_min']:>6.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128,256,512", help="comma-separated matrix sizes (default 64,128,256,512)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per size (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output path ('' for none)")
    a = p.parse_args(argv)
    try:
        sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes must be comma-separated integers, got {a.sizes!r}")
    record = run(sizes, repeats=a.repeats, seed=a.seed, out=a.out or None)
    print(format_table(record))
    m = record["machine"]
    print(f"({m['platform']}, {m['cpu_count']} CPUs, numpy {m['numpy']}, scipy {m['scipy']}, BLAS {m['blas']})")
    if a.out:
        print(f"wrote {a.out}")
    return record


if __name__ == "__main__":
    main()
