"""Training throughput for many seeds: one vmapped program over seeds against a Python loop over seeds.

All methods run :func:`schurjax.train.train` with the same task, sizes and seeds:

* ``vmap``: the default, one compiled program that vmaps the update over all seeds;
* ``map``: one compiled program that runs ``lax.map`` over the seeds (``seed_chunk=1``);
* ``loop``: a Python loop over seeds (``parallel=False``), reusing one compiled single-seed program.
 Each is timed ``repeats`` times, interleaved
(so background load hits both alike), after one untimed warm-up that compiles; the best time is reported.
Throughput is in seed-steps per second (optimiser steps summed over seeds) and in wall-clock steps per second
for all seeds together.

    python benchmarks/train_throughput.py                       # flipflop, 8 seeds, n=64, B=64, 100 steps
    python benchmarks/train_throughput.py --task copy --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax

from schurjax import tasks
from schurjax.train import train

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


def run(
    task: str = "flipflop",
    n_seeds: int = 8,
    steps: int = 100,
    n_hidden: int = 64,
    batch_size: int = 64,
    repeats: int = 2,
    task_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time vmap-over-seeds against a loop over seeds; returns a JSON-able dict of the measurement.

    Example:
        >>> run("copy", n_seeds=2, steps=10, n_hidden=8, batch_size=4, repeats=1)["speedup"]
    """
    t = tasks.get(task, **(task_params or {}))
    seeds = list(range(n_seeds))
    kw = dict(n_hidden=n_hidden, steps=steps, batch_size=batch_size, log_every=steps, progress=False)
    methods = {"vmap": dict(parallel=True), "map": dict(seed_chunk=1), "loop": dict(parallel=False)}
    best = {m: float("inf") for m in methods}
    for extra in methods.values():  # warm-up: compile
        train(t, seeds, **kw, **extra)
    for _ in range(repeats):
        for m, extra in methods.items():
            t0 = time.perf_counter()
            res = train(t, seeds, **kw, **extra)
            jax.block_until_ready(res.models[-1].W_rec)
            best[m] = min(best[m], time.perf_counter() - t0)
    rows = {
        m: {
            "seconds": best[m],
            "seed_steps_per_s": n_seeds * steps / best[m],
            "steps_per_s": steps / best[m],
        }
        for m in methods
    }
    return {
        "task": task,
        "task_params": t.params(),
        "n_seeds": n_seeds,
        "steps": steps,
        "n_hidden": n_hidden,
        "batch_size": batch_size,
        "trial_steps": t.steps,
        "repeats": repeats,
        "methods": rows,
        "speedup": rows["vmap"]["seed_steps_per_s"] / rows["loop"]["seed_steps_per_s"],
        "speedup_map": rows["map"]["seed_steps_per_s"] / rows["loop"]["seed_steps_per_s"],
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table of a :func:`run` result."""
    lines = [
        f"train throughput: task={result['task']} seeds={result['n_seeds']} n={result['n_hidden']} "
        f"B={result['batch_size']} T={result['trial_steps']} steps={result['steps']}",
        f"{'method':8s} {'seconds':>9s} {'steps/s':>9s} {'seed-steps/s':>13s}",
    ]
    for m, r in result["methods"].items():
        lines.append(f"{m:8s} {r['seconds']:9.2f} {r['steps_per_s']:9.1f} {r['seed_steps_per_s']:13.1f}")
    lines.append(f"vmap / loop speedup: {result['speedup']:.2f}x;  map / loop: {result['speedup_map']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="flipflop")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--B", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--task-params", default="{}", help="task parameters as JSON, e.g. '{\"steps\": 50}'")
    p.add_argument("--out", default=str(RESULTS), help="JSON output ('' to skip)")
    a = p.parse_args(argv)
    result = run(a.task, a.seeds, a.steps, a.n, a.B, a.repeats, json.loads(a.task_params))
    print(format_table(result))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
