"""The ``schurjax`` command: train models, run resumable ablation sweeps, write reports, run the demo.

    schurjax train --task flipflop --seeds 0-3 --hidden 64 --out runs/ff
    schurjax sweep MODEL... --families single,block,band,all_nonnormal --controls 4 --trials 256 --out runs/x
    schurjax sweep MODEL... --no-deviation --out runs/x     (the plain rollout: loses the smallest effects)
    schurjax report runs/x
    schurjax demo
    schurjax info

MODEL is a saved model (``runs/ff/flipflop-0.eqx``), ``zoo:flipflop/0`` or ``zoo:flipflop`` (all shipped seeds).
Bad input (missing file, unknown family or task, a model that doesn't fit its task, an output folder holding a
different sweep) gets a one-line message on stderr and exit status 2: the commands validate their input explicitly
(:class:`UsageError`). Anything else is a bug: an "internal error" line and the traceback, exit status 1.
``SCHURJAX_DEBUG=1`` re-raises every error (tracebacks for bad input too).

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schurjax import runs
from schurjax.runs import UsageError, user_errors
from schurjax.schur import ORDERS

__all__ = ["main", "build_parser", "DEMO", "UsageError"]

# The demo's embedded defaults: 8 zoo models, 42k variants; measured 104 s wall (sweep 85 s) on the 2-core CPU
# machine while other jobs loaded it (load average 5).
DEMO: dict[str, Any] = {
    "tasks": ("copy", "flipflop", "sine", "context"),
    "seeds_per_task": 2,
    "families": ("single", "block", "band", "all_nonnormal"),
    "controls": 1,
    "control_kinds": ("matched_norm",),
    "control_max": None,  # every Schur ablation gets its matched-norm control
    "trials": 64,
    "chunk_size": 512,
    "seed": 0,
    "out": "runs/demo",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``schurjax sweep: error: ...``) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _int_at_least(minimum: int, expected: str):
    """An argparse type: an int >= ``minimum``, else a one-line error naming ``expected``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = minimum - 1
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return v

    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite float > 0."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return v


_positive_int = _int_at_least(1, "a positive int")
_nonneg_int = _int_at_least(0, "an int >= 0")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``schurjax`` command (subcommands train, sweep, report, demo, info)."""
    p = _Parser(prog="schurjax", description="Batched Schur-coupling ablations of trained tanh RNNs (JAX).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train tanh RNNs on a task, one per seed, and save them")
    t.add_argument("--task", required=True, help="copy, flipflop, sine or context")
    t.add_argument("--seeds", default="0", help="e.g. 0-3 or 0,2,5 (default 0)")
    t.add_argument("--hidden", type=_positive_int, default=64, help="hidden units (default 64)")
    t.add_argument("--steps", type=_positive_int, default=None, help="optimizer steps (default: train's default)")
    t.add_argument("--batch-size", type=_positive_int, default=None, help="trials per step")
    t.add_argument("--lr", type=_positive_float, default=None, help="learning rate (a number > 0)")
    t.add_argument("--out", required=True, help="folder for <task>-<seed>.eqx (+ .json metadata)")
    t.add_argument("--device", choices=("cpu", "gpu"), default=None, help="JAX platform (default: JAX's default)")
    t.add_argument("--quiet", action="store_true", help="no progress output")

    s = sub.add_parser("sweep", help="ablate Schur couplings of models, with random controls, into a run folder")
    s.add_argument("models", nargs="+", metavar="MODEL", help="model.eqx, zoo:TASK/SEED or zoo:TASK")
    _sweep_options(s, defaults={"families": "single,block,band,all_nonnormal", "controls": 1, "trials": 256})
    s.add_argument("--out", required=True, help="run folder (rerun the same command to resume)")
    s.add_argument("--task", default=None, help="evaluate on this task instead of the one in the model's metadata")
    s.add_argument("--report", action="store_true", help="also write report.html when done")

    r = sub.add_parser("report", help="write RUN/report.html (embedded figures) and print a summary")
    r.add_argument("run", metavar="RUN", help="a run folder written by sweep or demo")
    r.add_argument("--no-figures", action="store_true", help="text summary only")

    d = sub.add_parser("demo", help="the main job: zoo models of all four tasks, couplings vs random controls")
    d.add_argument("--out", default=DEMO["out"], help=f"run folder (default {DEMO['out']})")
    d.add_argument("--trials", type=_positive_int, default=DEMO["trials"], help=f"default {DEMO['trials']}")
    d.add_argument("--seeds-per-task", type=_positive_int, default=DEMO["seeds_per_task"])
    d.add_argument("--control-max", type=_nonneg_int, default=DEMO["control_max"],
                   help="at most this many ablations per family and model get a control (default all)")
    d.add_argument("--tasks", default=",".join(DEMO["tasks"]), help="comma list of zoo tasks (default all four)")
    d.add_argument("--families", default=",".join(DEMO["families"]),
                   help="comma list of families (default %(default)s)")  # fmt: skip
    d.add_argument("--device", choices=("cpu", "gpu"), default=None)
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("info", help="versions, devices and precision in use")
    return p


def _sweep_options(s: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    s.add_argument("--families", default=defaults["families"],
                   help=f"comma list of {', '.join(runs.FAMILIES)} (default %(default)s)")  # fmt: skip
    s.add_argument("--controls", type=_nonneg_int, default=defaults["controls"],
                   help="random controls per ablation and kind (0: none; default %(default)s)")  # fmt: skip
    s.add_argument("--control-kinds", default="matched_norm",
                   help=f"comma list of {', '.join(runs.CONTROL_KINDS)} (default matched_norm)")  # fmt: skip
    s.add_argument("--control-max", type=_nonneg_int, default=None,
                   help="at most this many ablations per family and model get controls (default all)")
    s.add_argument("--trials", type=_positive_int, default=defaults["trials"], help="batch size (default %(default)s)")
    s.add_argument("--order", choices=ORDERS, default="modulus", help="Schur block order")
    s.add_argument("--precision", choices=runs.PRECISIONS, default="highest",
                   help="float32 matmul precision in the rollouts (default highest; the others lose small effects "
                        "on GPUs)")  # fmt: skip
    s.add_argument("--deviation", action=argparse.BooleanOptionalAction, default=None,
                   help="carry h_k - h from the unablated trajectory in the rollouts (default): small loss changes "
                        "keep their digits (error bound vs float64 in benchmarks/RESULTS.md); --no-deviation: the "
                        "plain rollout, which differences two float32 trajectories")  # fmt: skip
    s.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="rollout dtype (float64: for verification, slow)")  # fmt: skip
    s.add_argument("--chunk-size", type=_positive_int, default=512, help="variants per chunk file (default 512)")
    s.add_argument("--seed", type=_nonneg_int, default=0, help="root seed of the batch and the controls")
    s.add_argument("--device", choices=("cpu", "gpu"), default=None, help="JAX platform (default: JAX's default)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _device(name: str | None):
    """Run under ``jax.default_device`` of the first device of platform ``name`` (cpu/gpu), if given."""
    if name is None:
        yield None
        return
    import jax

    try:
        devs = jax.devices(name)
    except RuntimeError:
        devs = []
    if not devs:
        raise UsageError(f"--device: no {name} device available (JAX backend: {jax.default_backend()})")
    with jax.default_device(devs[0]):
        yield devs[0]


# ----------------------------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    import jax


    for k, v in runs.versions().items():
        print(f"{k:<12}{v}")
    print(f"{'backend':<12}{jax.default_backend()}")
    for d in jax.devices():
        print(f"{'device':<12}{d} ({d.device_kind})")
    prec = jax.config.jax_default_matmul_precision or "highest (schurjax sweeps; JAX's own default otherwise)"
    print(f"{'precision':<12}float32, matmul precision {prec}")
    print(f"{'x64':<12}{'enabled' if jax.config.jax_enable_x64 else 'disabled'}")
    try:
        import pyarrow  # noqa: F401

        print(f"{'parquet':<12}yes (pyarrow)")
    except ImportError:
        print(f"{'parquet':<12}no (install pyarrow for table.parquet)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import jax

    from schurjax import checkpoint, runs, tasks, train

    if args.task not in tasks.names():
        raise UsageError(f"--task: unknown task {args.task!r}; expected one of {', '.join(tasks.names())}")
    with user_errors():
        seeds = runs.parse_seeds(args.seeds)
        task = tasks.get(args.task)
    kw: dict[str, Any] = {"n_hidden": args.hidden, "progress": not args.quiet}
    if args.steps is not None:
        kw["steps"] = args.steps
    if args.batch_size is not None:
        kw["batch_size"] = args.batch_size
    if args.lr is not None:
        kw["learning_rate"] = args.lr
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    t0 = time.perf_counter()
    with _device(args.device):
        result = train.train(task, seeds, **kw)
        batch = task.sample(jax.random.key(10_000), 256)
        paths = []
        for seed, model in zip(seeds, result.models, strict=True):
            y = jax.vmap(model)(batch.inputs)
            loss, score = float(task.loss(y, batch)), float(task.score(y, batch))
            meta = {
                "task": {"name": task.name, "params": runs._task_params(task)},
                "seed": int(seed),
                "train": _jsonable(getattr(result, "config", {})),
                "metrics": {"eval_loss": loss, "eval_score": score, "eval_trials": 256},
            }
            paths.append(checkpoint.save_model(out / f"{task.name}-{seed}.eqx", model, meta))
            print(f"{task.name} seed {seed}: eval loss {loss:.4g}, score {score:.3f} -> {paths[-1]}")
    print(f"trained {len(paths)} model(s) in {time.perf_counter() - t0:.1f}s")
    return 0


def _jsonable(x: Any) -> Any:
    import json

    from schurjax.results import to_jsonable

    try:
        return json.loads(json.dumps(to_jsonable(x), default=str))
    except (TypeError, ValueError):
        return str(x)


def _config_from_args(args: argparse.Namespace) -> Any:

    kinds = runs.parse_control_kinds(args.control_kinds)
    return runs.SweepConfig(
        families=tuple(runs.parse_families(args.families)),
        controls=args.controls if kinds else 0,
        control_kinds=tuple(kinds),
        control_max=args.control_max,
        trials=args.trials,
        order=args.order,
        precision=args.precision,
        dtype=args.dtype,
        chunk_size=args.chunk_size,
        seed=args.seed,
        deviation=args.deviation,
    )


def cmd_sweep(args: argparse.Namespace) -> int:

    with user_errors():
        config = _config_from_args(args)
    if args.task is not None:
        from schurjax import tasks

        if args.task not in tasks.names():
            raise UsageError(f"--task: unknown task {args.task!r}; expected one of {', '.join(tasks.names())}")
    t0 = time.perf_counter()
    with _device(args.device):
        with user_errors():
            models = runs.resolve_models(args.models, task_override=args.task)
        run = runs.run_sweep(models, config, args.out, progress=not args.quiet,
                             extra_manifest={"command": ["schurjax", *args.argv]})  # fmt: skip
    dt = time.perf_counter() - t0
    print(runs.format_summary(runs.summarize(run.table)))
    print(f"\n{len(run.table)} rows -> {run.path / 'table.csv'}  ({dt:.1f}s)")
    if args.report:
        _write_report(run, quiet=True)
    return 0


def _write_report(run: Any, quiet: bool = False) -> Path | None:
    try:
        from schurjax import plot
    except ImportError as e:  # matplotlib missing
        _err(f"schurjax report: figures skipped ({e}); install the 'plot' extra: pip install 'schurjax[plot]'")
        return None
    path = plot.write_report(run)
    if not quiet:
        print(f"report -> {path}")
    return path


def cmd_report(args: argparse.Namespace) -> int:
    from schurjax import results, runs

    path = Path(args.run)
    if not path.exists():
        raise UsageError(f"RUN: no such folder: {path}")
    if not (path / results.MANIFEST).is_file():
        raise UsageError(f"RUN: {path} is not a run folder (no {results.MANIFEST})")
    if not (path / results.TABLE_CSV).is_file():
        raise UsageError(f"RUN: {path} is incomplete (no {results.TABLE_CSV}); rerun its sweep command to finish it")
    with user_errors():
        run = results.load(path)
    print(runs.format_summary(runs.summarize(run.table)))
    if not args.no_figures:
        _write_report(run)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from schurjax import zoo

    t0 = time.perf_counter()
    entries = zoo.entries()
    specs = []
    for task in dict.fromkeys(t.strip() for t in args.tasks.split(",") if t.strip()):  # each task once, in order
        seeds = sorted(int(e.seed) for e in entries if e.task == task)[: args.seeds_per_task]
        if not seeds:
            have = ", ".join(sorted({e.task for e in entries})) or "nothing"
            raise UsageError(f"--tasks: the zoo has no {task!r} model (it has {have})")
        specs += [f"zoo:{task}/{s}" for s in seeds]
    if not specs:
        raise UsageError("--tasks: no task given")
    with user_errors():
        config = runs.SweepConfig(
            families=tuple(runs.parse_families(args.families)),
            controls=DEMO["controls"],
            control_kinds=DEMO["control_kinds"],
            control_max=args.control_max,
            trials=args.trials,
            chunk_size=DEMO["chunk_size"],
            seed=DEMO["seed"],
        )
    with _device(args.device):
        with user_errors():
            models = runs.resolve_models(specs)
        run = runs.run_sweep(models, config, args.out, progress=not args.quiet,
                             extra_manifest={"command": ["schurjax", *args.argv]})  # fmt: skip
    t_sweep = time.perf_counter() - t0
    report = _write_report(run, quiet=True)
    dt = time.perf_counter() - t0
    kinds = ", ".join(k.replace("_", "-") for k in config.control_kinds)
    print(f"schurjax demo: Schur-coupling ablations vs {kinds} random controls (arXiv:2606.18457)")
    print(runs.format_summary(runs.summarize(run.table)))
    print(f"\n{len(run.table)} rows -> {run.path / 'table.csv'}" + (f"; report -> {report}" if report else ""))
    print(f"sweep {t_sweep:.0f}s, total {dt:.0f}s")
    return 0


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "report": cmd_report, "demo": cmd_demo, "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``schurjax`` command; returns the exit status (0 ok, 1 internal error, 2 bad input).

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Example:
        >>> main(["sweep", "zoo:flipflop/0", "--trials", "32", "--out", "runs/ff"])
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = os.environ.get("SCHURJAX_DEBUG", "") not in ("", "0")
    cmd = argv[0] if argv and argv[0] in COMMANDS else None
    prefix = f"schurjax {cmd}" if cmd else "schurjax"
    try:
        args = parser.parse_args(argv)
        args.argv = argv
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)
    except UsageError as e:
        if debug:
            raise
        msg = str(e)
        _err(msg if msg.startswith("schurjax") else f"{prefix}: error: {msg}")
        return 2
    except OSError as e:  # missing files, unwritable folders, a full disk: the environment, not a bug
        if debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        _err(f"{prefix}: error: {msg}")
        return 2
    except Exception as e:
        if debug:
            raise
        traceback.print_exc(file=sys.stderr)
        first = str(e).splitlines()[0] if str(e) else ""
        _err(f"{prefix}: internal error: {type(e).__name__}: {first} (a bug in schurjax; please report it with "
             "the traceback above)")  # fmt: skip
        return 1
    except KeyboardInterrupt:
        _err(f"{prefix}: interrupted (rerun the same command to resume)")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
