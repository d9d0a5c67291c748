"""``python -m schurjax.zoo build [--tasks ...] [--seeds ...] [--sizes ...] [--alpha A] [--out DIR] [--quiet]`` and
``... list``."""

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
    b.add_argument("--sizes", nargs="+", type=int, default=None, help="hidden sizes (default: all of that alpha's)")
    b.add_argument(
        "--alpha", type=float, default=1.0, help="1 (default): the paper's tanh RNNs; 0.2: the leaky family (n = 64)"
    )
    b.add_argument("--out", default=None, help="output folder (default: the package's zoo/models)")
    b.add_argument("--steps-scale", type=float, default=1.0, help="scale training steps (smoke tests only)")
    b.add_argument("--quiet", action="store_true", help="no progress output")
    sub.add_parser("list", help="list the shipped models and their held-out metrics")
    args = parser.parse_args(argv)

    if args.cmd == "build":
        from schurjax.zoo.build import CONFIGS_BY_ALPHA, SEEDS, build

        t0 = time.perf_counter()
        paths = []
        try:
            if args.alpha not in CONFIGS_BY_ALPHA:
                raise ValueError(
                    f"zoo.build: no configuration for alpha={args.alpha!r}, expected one of {list(CONFIGS_BY_ALPHA)}"
                )
            for n in args.sizes or list(CONFIGS_BY_ALPHA[args.alpha]):
                paths += build(
                    args.out,
                    args.tasks,
                    args.seeds or SEEDS,
                    n_hidden=n,
                    progress=not args.quiet,
                    steps_scale=args.steps_scale,
                    alpha=args.alpha,
                )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"zoo: wrote {len(paths)} models in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return 0
    from schurjax import zoo

    for e in zoo.entries(alpha=None):
        m = e.metadata["metrics"]
        io = f"  ideal {m['ideal_observer_score']:.4f}" if "ideal_observer_score" in m else ""
        loss, score = m["heldout_loss"], m["heldout_score"]
        leak = "" if e.alpha == 1.0 else f"  alpha={e.alpha:g}"
        print(f"{e.task:9s} seed {e.seed}  n={e.n_hidden:<4d} loss {loss:.5f}  score {score:.4f}{io}{leak}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
