"""Scaling: variants per second against device count and process count, and a cost model of a sweep's time.

* ``devices``: ``sj.evaluate`` on the C1 problem (n=128, K=1024 single couplings, B=32, T=60) with its variants
  split across 1, 2, 4 forced CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count``), each count in a
  fresh subprocess; on a GPU node pass ``--platform gpu`` to use every GPU instead. Parallel efficiency is
  ``rate_d / (d * rate_1)``. On a 2-core CPU, forced devices share the two cores: expect at most 2x; the point is
  that the overhead of splitting is small.
* ``processes``: the same sweep (``schurjax sweep`` on a zoo network) by 1 and by 2 processes over loopback
  (``--coordinator``), wall time including start-up, compilation and the run folder.
* ``cost``: engine time per variant at a few sizes (n, B, T), fitted as ``t = c0 + c1 * B*T*n^2 + c2 * B*T*n``
  (seconds per variant; the GEMM term and the elementwise term), and what it predicts for all couplings of
  n = 512 (K = n(n-1)/2, B = 64, T = 100) on this machine.

    python benchmarks/scaling.py                      # all three parts, JSON to benchmarks/results/scaling.json
    python benchmarks/scaling.py --parts devices --platform gpu
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

OUT = HERE / "results" / "scaling.json"


def _child_devices(n: int, K: int, B: int, T: int, devices: int, repeats: int) -> dict[str, Any]:
    """In a fresh process: the engine's variants/s on one problem with its variants split over ``devices``."""
    import jax
    from sweep_throughput import make_problem

    import schurjax as sj

    model, sf, variants, batch = make_problem(n=n, K=K, B=B, T=T)
    sj.evaluate(model, sf, variants, batch, devices=devices)  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sj.evaluate(model, sf, variants, batch, devices=devices)
        times.append(time.perf_counter() - t0)
    return {"devices": devices, "platform": jax.default_backend(), "seconds": min(times), "var_per_s": K / min(times)}


def device_scaling(counts=(1, 2, 4), *, n=128, K=1024, B=32, T=60, repeats=3, platform="cpu") -> dict[str, Any]:
    """Variants/s against device count (each count in its own subprocess)."""
    rows = []
    for d in counts:
        env = dict(os.environ)
        if platform == "cpu":
            env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={max(counts)}")
        code = (
            f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import scaling; "
            f"print(json.dumps(scaling._child_devices({n}, {K}, {B}, {T}, {d}, {repeats})))"
        )
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["var_per_s"]
    for r in rows:
        r["speedup"] = r["var_per_s"] / base
        r["efficiency"] = r["speedup"] / (r["devices"] / rows[0]["devices"])
    return {"problem": dict(n=n, K=K, B=B, T=T), "rows": rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_scaling(
    counts=(1, 2), *, model="zoo:flipflop/0", families="single", trials=32, workdir: Path | None = None
) -> dict[str, Any]:
    """Wall time of one sweep by 1 and by P processes over loopback (same table; start-up included)."""
    import tempfile

    workdir = Path(workdir or tempfile.mkdtemp(prefix="schurjax-scaling-"))
    argv = [
        "-m",
        "schurjax.cli",
        "sweep",
        model,
        "--families",
        families,
        "--controls",
        "0",
        "--trials",
        str(trials),
        "--quiet",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    rows, tables = [], []
    for p in counts:
        out = workdir / f"p{p}"
        port = _free_port()
        dist = [] if p == 1 else ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(p)]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, *argv, "--out", str(out), *dist, *([] if p == 1 else ["--process-id", str(i)])],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(p)
        ]
        codes = [pr.wait() for pr in procs]
        wall = time.perf_counter() - t0
        if any(codes):
            raise RuntimeError(f"process_scaling: {p} processes exited with {codes}")
        manifest = json.loads((out / "manifest.json").read_text())
        variants = sum(m["variants"] for m in manifest["models"])
        rows.append({"processes": p, "wall_s": wall, "variants": variants, "var_per_s": variants / wall})
        tables.append((out / "table.csv").read_bytes())
    for r in rows:
        r["speedup"] = rows[0]["wall_s"] / r["wall_s"]
        r["efficiency"] = r["speedup"] / r["processes"]
    return {
        "model": model,
        "families": families,
        "trials": trials,
        "rows": rows,
        "same_table": all(t == tables[0] for t in tables),
    }


def cost_model(
    sizes=((64, 32, 60), (128, 32, 60), (128, 64, 60), (128, 32, 120), (256, 16, 60)), *, K=512, repeats=2
) -> dict[str, Any]:
    """Seconds per variant at a few (n, B, T) (single couplings), fitted, with the n = 512 prediction."""
    from sweep_throughput import make_problem

    import schurjax as sj

    rows = []
    for n, B, T in sizes:
        model, sf, variants, batch = make_problem(n=n, K=K, B=B, T=T)
        sj.evaluate(model, sf, variants, batch)
        best = min(_timed(sj.evaluate, model, sf, variants, batch) for _ in range(repeats))
        rows.append({"n": n, "B": B, "T": T, "K": K, "seconds": best, "s_per_variant": best / K})
    X = np.array([[1.0, r["B"] * r["T"] * r["n"] ** 2, r["B"] * r["T"] * r["n"]] for r in rows])
    y = np.array([r["s_per_variant"] for r in rows])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    for r, fit in zip(rows, X @ coef, strict=True):
        r["fit_s_per_variant"] = float(fit)
    n, B, T = 512, 64, 100
    K512 = n * (n - 1) // 2
    per = float(coef @ [1.0, B * T * n**2, B * T * n])
    return {
        "rows": rows,
        "coef": {"c0": float(coef[0]), "c1_gemm": float(coef[1]), "c2_elementwise": float(coef[2])},
        "predict_n512": {
            "K": K512,
            "B": B,
            "T": T,
            "s_per_variant": per,
            "hours_this_machine": per * K512 / 3600,
            "flop_per_variant": 2.0 * n * n * B * T,
        },
    }


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _machine() -> dict[str, Any]:
    import jax

    return {
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        "load_1min": os.getloadavg()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="devices,processes,cost")
    p.add_argument("--platform", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--devices", default="1,2,4", help="device counts (cpu: forced devices)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    result: dict[str, Any] = {"machine": _machine()}
    if "devices" in parts:
        result["devices"] = device_scaling(tuple(int(x) for x in args.devices.split(",")), platform=args.platform)
        for r in result["devices"]["rows"]:
            print(
                f"devices {r['devices']}: {r['var_per_s']:8.0f} var/s  speedup {r['speedup']:.2f}  "
                f"efficiency {r['efficiency']:.2f}"
            )
    if "processes" in parts:
        result["processes"] = process_scaling()
        for r in result["processes"]["rows"]:
            print(
                f"processes {r['processes']}: {r['wall_s']:6.1f} s wall ({r['var_per_s']:.0f} var/s)  "
                f"speedup {r['speedup']:.2f}  efficiency {r['efficiency']:.2f}"
            )
        print(f"same table: {result['processes']['same_table']}")
    if "cost" in parts:
        result["cost"] = cost_model()
        c = result["cost"]
        for r in c["rows"]:
            print(
                f"n={r['n']:4d} B={r['B']:3d} T={r['T']:4d}: {1e3 * r['s_per_variant']:.3f} ms/variant "
                f"(fit {1e3 * r['fit_s_per_variant']:.3f})"
            )
        pr = c["predict_n512"]
        print(
            f"n=512, all {pr['K']:,} couplings, B=64, T=100: {1e3 * pr['s_per_variant']:.1f} ms/variant, "
            f"{pr['hours_this_machine']:.1f} h on this machine"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
