"""``python -m schurjax.zoo build [--tasks ...] [--seeds ...] [--sizes ...] [--out DIR] [--quiet]`` and ``... list``."""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schurjax.zoo", description="Build or list the schurjax model zoo.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train and save the zoo models (reproducible from the seeds)")
    b.add_argument("--tasks", nargs="+", default=None, help="subset of tasks (default: all)")
    b.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: 0 1 2 3)")
    b.add_argument("--sizes", nargs="+", type=int, default=None, help="hidden sizes (default: 64 128)")
    b.add_argument("--out", default=None, help="output folder (default: the package's zoo/models)")
    b.add_argument("--steps-scale", type=float, default=1.0, help="scale training steps (smoke tests only)")
    b.add_argument("--quiet", action="store_true", help="no progress output")
    sub.add_parser("list", help="list the shipped models and their held-out metrics")
    args = parser.parse_args(argv)

    if args.cmd == "build":
        from schurjax.zoo.build import SEEDS, SIZES, build

        t0 = time.perf_counter()
        paths = []
        try:
            for n in args.sizes or SIZES:
                paths += build(
                    args.out,
                    args.tasks,
                    args.seeds or SEEDS,
                    n_hidden=n,
                    progress=not args.quiet,
                    steps_scale=args.steps_scale,
                )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"zoo: wrote {len(paths)} models in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return 0
    from schurjax import zoo

    for e in zoo.entries():
        m = e.metadata["metrics"]
        io = f"  ideal {m['ideal_observer_score']:.4f}" if "ideal_observer_score" in m else ""
        loss, score = m["heldout_loss"], m["heldout_score"]
        print(f"{e.task:9s} seed {e.seed}  n={e.n_hidden:<4d} loss {loss:.5f}  score {score:.4f}{io}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
