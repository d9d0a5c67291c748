"""The ``schurjax`` command: train models, run resumable ablation sweeps, write reports, run the demo and the study.

    schurjax train --task flipflop --seeds 0-3 --hidden 64 --out runs/ff
    schurjax sweep MODEL... --families single,block,band,all_nonnormal --controls 4 --trials 256 --out runs/x
    schurjax sweep model.eqx --task mytasks:Ramp --trials-file trials.npz --out runs/y
    schurjax import model.pt --out model.eqx --task neurogym:GoNogo-v0
    schurjax import ctrnn.pt --out ctrnn.eqx --layout neurogym --alpha 0.2    (also psychrnn, npz, lowrank)
    schurjax sweep MODEL... --no-deviation --out runs/x     (the plain rollout: loses the smallest effects)
    schurjax report runs/x
    schurjax demo
    schurjax study [--quick] [--out runs/study] [--tau 0.05] [--eps 0.01] [--tasks ...] [--seeds 0-3] [--sizes 64,128]
    schurjax compress MODEL --out DIR [--task T] [--criterion loss|score] [--tol X] [--schedule 0.05] [--steps 100]
                       [--spectrum frozen|free] [--maps frozen|free] [--decision-trials 1024]
    schurjax info

MODEL is a saved model (``runs/ff/flipflop-0.eqx``), ``zoo:flipflop/0`` or ``zoo:flipflop`` (all shipped seeds).
Bad input (missing file, unknown family or task, a model that doesn't fit its task, an output folder holding a
different sweep) gets a one-line message on stderr and exit status 2: the commands validate their input explicitly
(:class:`UsageError`). Anything else is a bug: an "internal error" line and the traceback, exit status 1.
``SCHURJAX_DEBUG=1`` re-raises every error (tracebacks for bad input too).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from schurjax.engine import PRECISIONS
from schurjax.errors import InputError
from schurjax.store._json import loads
from schurjax.sweeps import CONTROL_KINDS, SWEEP_FAMILIES
from schurjax.sweeps.config import SWEEP_ORDERS
from schurjax.sweeps.summary import CRITERIA

__all__ = ["main", "build_parser", "DEMO", "UsageError", "parse_seeds"]

# The demo's embedded defaults: 8 zoo models (two seeds of each task), all of their ablations with a control each.
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


class UsageError(ValueError):
    """Bad command-line input: printed as one line (``schurjax sweep: error: --trials: ...``), exit status 2."""


_FLAG_ALIASES = {"task_params": "task_param"}
"""Python argument names that differ from the CLI's ``dest`` (``sj.sweep(task_params=)`` <- ``--task-param``)."""


@functools.cache
def flags() -> dict[str, str]:
    """Python argument name -> the flag (or positional) of the ``schurjax`` command that sets it, read from the
    parser itself (every subcommand's options), so that no flag name is written twice.

    Example:
        >>> flags()["trials_file"], flags()["models"], flags()["task_params"]
        ('--trials-file', 'MODEL', '--task-param')
    """
    out: dict[str, str] = {}
    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sub in subs:
        for sp in sub.choices.values():
            for action in sp._actions:
                if action.dest in ("help", argparse.SUPPRESS):
                    continue
                if action.option_strings:
                    flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
                else:
                    flag = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
                out.setdefault(action.dest, flag)
    for name, dest in _FLAG_ALIASES.items():
        if dest in out:
            out[name] = out[dest]
    return out


def _flag_message(e: InputError) -> str:
    """An :class:`InputError` in the command's terms: ``--out: runs/x holds a different sweep ...``."""
    if e.arg is None:
        return e.detail
    return f"{flags().get(e.arg, e.arg)}: {e.detail}"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Treat the one-line ``ValueError`` / ``TypeError`` of argument validation inside as :class:`UsageError`.

    Wrap only the validation of user input (parsing, model loading), never the computation, so that a bug further
    in still surfaces as an internal error with its traceback.
    """
    try:
        yield
    except (UsageError, InputError):
        raise
    except (ValueError, TypeError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(text) from e


MAX_SEEDS = 100_000
"""The most seeds one ``schurjax train`` accepts (memory bounds it further, see :func:`_check_seeds_fit`)."""


def parse_seeds(text: str, *, limit: int = MAX_SEEDS) -> list[int]:
    """Parse ``"0-3"``, ``"0,2,5"`` or ``"0-3,7"`` into a sorted list of distinct non-negative ints (at most
    ``limit``, checked before any range is expanded).

    Example:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]
    """
    seeds: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if a > b or a < 0:
                    raise ValueError
                if b - a + 1 + len(seeds) > limit:
                    raise UsageError(f"--seeds: at most {limit:,} seeds at once, got {text!r}")
                seeds.update(range(a, b + 1))
            else:
                s = int(part)
                if s < 0:
                    raise ValueError
                seeds.add(s)
        except UsageError:
            raise
        except ValueError:
            raise UsageError(f"--seeds: expected e.g. '0-3' or '0,2,5' (non-negative ints), got {text!r}") from None
    return sorted(seeds)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``schurjax sweep: error: ...``) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _int_at_least(minimum: int, expected: str, maximum: int | None = None):
    """An argparse type: an int >= ``minimum`` (and <= ``maximum``), else a one-line error naming ``expected``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = minimum - 1
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        if maximum is not None and v > maximum:
            raise argparse.ArgumentTypeError(f"expected {expected} <= {maximum:,}, got {text!r}")
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


def _devices_arg(text: str) -> str | int:
    """An argparse type: ``all`` or a positive int."""
    return "all" if text == "all" else _int_at_least(1, "'all' or a positive int")(text)


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
    s.add_argument(
        "--task",
        default=None,
        help="evaluate on this task instead of the one in the model's metadata: "
        "a task name, neurogym:<env_id> or module:Name (your own Task class)",
    )
    s.add_argument(
        "--task-param",
        action="append",
        default=[],
        type=_task_param,
        metavar="KEY=VALUE",
        help="a parameter of --task (repeatable; VALUE is JSON or a string; dotted keys nest, e.g. dt=20 "
        "timing.delay=200 for NeuroGym env arguments); recorded in the manifest",
    )
    s.add_argument(
        "--criterion",
        choices=CRITERIA,
        default="auto",
        help="what 'keeps' means in the summary: score (task score drop <= 0.01), loss (dloss/loss <= 5%%) or "
        "auto (default: the score where the task has one)",
    )
    s.add_argument(
        "--trials-file",
        default=None,
        metavar="F.npz",
        help="evaluate on these trials (arrays inputs, targets, optional mask, valid) instead of "
        "sampling --trials from the task",
    )
    s.add_argument(
        "--devices",
        type=_devices_arg,
        default="all",
        help="local devices each chunk's variants are split across: all (default) or a count",
    )
    s.add_argument(
        "--fixed-points",
        action="store_true",
        help="also find each variant's fixed points at zero input and add their columns (n_stable, lost, "
        "gained, max_displacement, ...) to the table; slow (about 10 variants/s at n = 64)",
    )
    s.add_argument("--report", action="store_true", help="also write report.html when done")
    s.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="run as one of several processes sharing --out: process 0's address (jax.distributed)",
    )
    s.add_argument(
        "--num-processes",
        type=_int_at_least(1, "a positive int", 65_536),
        default=None,
        help="number of processes (with --coordinator)",
    )
    s.add_argument(
        "--process-id",
        type=_int_at_least(0, "an int >= 0", 65_535),
        default=None,
        help="this process's index (with --coordinator)",
    )
    s.add_argument(
        "--timeout",
        type=_int_at_least(1, "seconds (an int >= 1)", 86_400),
        default=None,
        help="seconds a process waits for the others before it stops (with --coordinator; default 120)",
    )

    i = sub.add_parser(
        "import",
        help="convert a trained network (torch nn.RNN, NeuroGym CTRNN, PsychRNN .npz, low-rank RNN, .npz) into a "
        "schurjax model (.eqx)",
    )
    i.add_argument(
        "checkpoint",
        metavar="FILE",
        help="a torch state dict file (.pt, read with weights_only=True) or an .npz (read with allow_pickle=False)",
    )
    i.add_argument("--out", required=True, help="the .eqx to write (its .json sidecar goes next to it)")
    i.add_argument(
        "--task",
        default=None,
        help="the task the model was trained on (name, neurogym:<env_id> or "
        "module:Name); recorded so that `schurjax sweep MODEL.eqx` finds it",
    )
    i.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "torch-rnn", "neurogym", "psychrnn", "npz", "lowrank"),
        help="what the file holds (default auto: told apart by suffix and keys)",
    )
    i.add_argument("--alpha", type=float, default=None, help="dt / tau in (0, 1], where the file does not store it")
    i.add_argument(
        "--form",
        default=None,
        choices=("rate", "post", "current"),
        help="the step (see schurjax.rnn); each layout but npz has its own",
    )
    i.add_argument(
        "--nonlinearity",
        default=None,
        choices=("tanh", "relu", "softplus"),
        help="phi, which a state dict does not record (defaults: torch-rnn/npz/lowrank tanh, neurogym/psychrnn relu)",
    )
    i.add_argument("--prefix", default=None, help="key prefix of the nn.RNN (or CTRNN) in a whole model's state dict")
    i.add_argument("--readout-prefix", default=None, help="key prefix of the nn.Linear readout")
    i.add_argument("--force", action="store_true", help="replace an existing --out .eqx/.json")
    i.add_argument(
        "--task-param",
        action="append",
        default=[],
        type=_task_param,
        metavar="KEY=VALUE",
        help="a parameter of --task, recorded with it (e.g. dt=20 for the NeuroGym env the network was trained on)",
    )

    r = sub.add_parser("report", help="write RUN/report.html (embedded figures) and print a summary")
    r.add_argument("run", metavar="RUN", help="a run folder written by sweep or demo")
    r.add_argument("--no-figures", action="store_true", help="text summary only")
    r.add_argument(
        "--criterion", choices=CRITERIA, default="auto", help="what 'keeps' means: score, loss or auto (default)"
    )

    d = sub.add_parser("demo", help="the main job: zoo models of all four tasks, couplings vs random controls")
    d.add_argument("--out", default=DEMO["out"], help=f"run folder (default {DEMO['out']})")
    d.add_argument("--trials", type=_positive_int, default=DEMO["trials"], help=f"default {DEMO['trials']}")
    d.add_argument("--seeds-per-task", type=_positive_int, default=DEMO["seeds_per_task"])
    d.add_argument(
        "--control-max",
        type=_nonneg_int,
        default=DEMO["control_max"],
        help="at most this many ablations per family and model get a control (default all)",
    )
    d.add_argument("--tasks", default=",".join(DEMO["tasks"]), help="comma list of zoo tasks (default all four)")
    d.add_argument(
        "--families", default=",".join(DEMO["families"]), help="comma list of families (default %(default)s)"
    )
    d.add_argument("--device", choices=("cpu", "gpu"), default=None)
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    st = sub.add_parser(
        "study",
        help="the research study: held-out keep shares with intervals, controls, "
        "compression, copy replay, task restriction, cross-seed profiles",
    )
    st.add_argument("--quick", action="store_true", help="small preset for a first look (minutes on 2 CPU cores)")
    st.add_argument(
        "--out", default="runs/study", help="study folder (rerun the same command to resume; default %(default)s)"
    )
    st.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        default=None,
        help="study these models (model.eqx, zoo:TASK/SEED) instead of the zoo's tasks x seeds x sizes",
    )
    st.add_argument("--tasks", default=None, help="comma list of zoo tasks (default copy,flipflop,sine,context)")
    st.add_argument("--seeds", default=None, help="zoo seeds, e.g. 0-3 (default 0-3; --quick: 0-1)")
    st.add_argument("--sizes", default=None, help="hidden sizes, e.g. 64,128 (default: every size the zoo ships)")
    st.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="zoo family: 1 (the paper's tanh RNNs, default) or 0.2 (the leaky tanh rate networks)",
    )
    st.add_argument(
        "--tau", type=float, default=None, help="loss criterion dloss/loss <= tau, one-sided (default 0.05)"
    )
    st.add_argument(
        "--loss-sides",
        choices=("one", "two"),
        default=None,
        help="loss criterion one-sided (dloss/loss <= tau, default) or two-sided (|dloss|/loss <= tau)",
    )
    st.add_argument("--eps", type=float, default=None, help="score criterion: score drop <= eps (default 0.01)")
    st.add_argument(
        "--trials",
        type=_int_at_least(2, "an int >= 2"),
        default=None,
        help="trials in each of the selection and held-out batches (default 256; --quick: 128)",
    )
    st.add_argument(
        "--bootstrap", type=_int_at_least(10, "an int >= 10"), default=None, help="bootstrap resamples (default 1000)"
    )
    st.add_argument("--seed", type=_nonneg_int, default=None, help="root seed, 0 <= seed < 2**63 (default 0)")
    st.add_argument("--control-kinds", default=None, help=f"comma list of {', '.join(CONTROL_KINDS)} (default all)")
    st.add_argument(
        "--control-max",
        type=_positive_int,
        default=None,
        help="ablations per family and model that get controls (default 256)",
    )
    st.add_argument("--greedy-candidates", type=_positive_int, default=None, help="couplings per greedy pass")
    st.add_argument("--greedy-passes", type=_nonneg_int, default=None, help="greedy passes of the compression")
    st.add_argument(
        "--margin",
        type=float,
        default=None,
        help="compression searches within (1 - margin) x tau / eps on the selection batch (default: a margin "
        "set from the measured selection/validation gap)",
    )
    st.add_argument("--restriction-max", type=_positive_int, default=None, help="removals in the restriction part")
    st.add_argument(
        "--control-draws", type=_positive_int, default=None, help="controls per removal and kind (default 4)"
    )
    st.add_argument(
        "--worst-starts", type=_positive_int, default=None, help="starts of each worst-case search (default 8)"
    )
    st.add_argument(
        "--worst-steps", type=_nonneg_int, default=None, help="gradient steps of each worst-case search (default 40)"
    )
    st.add_argument(
        "--radius-iters", type=_positive_int, default=None, help="searches of the robustness radius (default 8)"
    )
    st.add_argument(
        "--rotations", type=_nonneg_int, default=None, help="random 2x2 rotations in the coordinates part (default 2)"
    )
    st.add_argument(
        "--coordinate-trials",
        type=_int_at_least(2, "an int >= 2"),
        default=None,
        help="held-out trials of the coordinates part (default 256; --quick: 64)",
    )
    st.add_argument("--null-draws", type=_int_at_least(10, "an int >= 10"), default=None, help="draws of the nulls")
    st.add_argument("--device", choices=("cpu", "gpu"), default=None, help="JAX platform (default: JAX's default)")
    st.add_argument("--quiet", action="store_true", help="no progress lines")

    c = sub.add_parser(
        "compress",
        help="prune Schur couplings and fine-tune (removed couplings pinned at zero); accept on held-out trials by a "
        "confidence bound; export .eqx/.pt with the evidence; compare with magnitude pruning and low rank",
    )
    c.add_argument("model", metavar="MODEL", help="a saved model (.eqx) or zoo:TASK/SEED")
    c.add_argument("--task", default=None, help="the task (default: the one in the model's metadata)")
    c.add_argument("--out", required=True, help="folder for the compressed model, report.md, curve.csv, result.json")
    c.add_argument("--criterion", choices=("loss", "score"), default="loss", help="default %(default)s")
    c.add_argument("--tol", type=float, default=None, help="tau (loss, default 0.05) or eps (score, default 0.01)")
    c.add_argument("--schedule", type=_positive_float, default=0.05, help="share pruned per round (default 0.05)")
    c.add_argument("--steps", type=_nonneg_int, default=100, help="Adam steps per round (default 100)")
    c.add_argument("--lr", type=_positive_float, default=3e-4, help="learning rate (default 3e-4)")
    c.add_argument("--spectrum", choices=("frozen", "free"), default="frozen", help="block diagonal of T")
    c.add_argument("--maps", choices=("frozen", "free"), default="frozen", help="input and readout maps")
    c.add_argument("--trials", type=_int_at_least(2, "an int >= 2"), default=256, help="selection/validation trials")
    c.add_argument(
        "--decision-trials", type=_int_at_least(2, "an int >= 2"), default=1024, help="held-out trials (default 1024)"
    )
    c.add_argument("--bootstrap", type=_int_at_least(10, "an int >= 10"), default=1000, help="bootstrap resamples")
    c.add_argument("--seed", type=_nonneg_int, default=0, help="root seed of the batches (default 0)")
    c.add_argument("--no-baselines", action="store_true", help="skip magnitude pruning, random couplings, low rank")
    c.add_argument("--device", choices=("cpu", "gpu"), default=None, help="JAX platform (default: JAX's default)")

    sub.add_parser("info", help="versions, devices and precision in use")
    return p


def _sweep_options(s: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    s.add_argument(
        "--families",
        default=defaults["families"],
        help=f"comma list of {', '.join(SWEEP_FAMILIES)} (default %(default)s)",
    )
    s.add_argument(
        "--controls",
        type=_nonneg_int,
        default=defaults["controls"],
        help="random controls per ablation and kind (0: none; default %(default)s)",
    )
    s.add_argument(
        "--control-kinds",
        default="matched_norm",
        help=f"comma list of {', '.join(CONTROL_KINDS)} (default matched_norm)",
    )
    s.add_argument(
        "--control-max",
        type=_nonneg_int,
        default=None,
        help="at most this many ablations per family and model get controls (default all)",
    )
    s.add_argument("--trials", type=_positive_int, default=defaults["trials"], help="batch size (default %(default)s)")
    s.add_argument(
        "--order",
        choices=SWEEP_ORDERS,
        default=None,
        help="Schur block order (default: modulus, or decay |1 - alpha + alpha lam| for leaky models)",
    )
    s.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="highest",
        help="float32 matmul precision in the rollouts (default highest; the others lose small effects on GPUs)",
    )
    s.add_argument(
        "--deviation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="carry h_k - h from the unablated trajectory in the rollouts (default): small loss changes "
        "keep their digits (error bound vs float64 in benchmarks/RESULTS.md); --no-deviation: the "
        "plain rollout, which differences two float32 trajectories",
    )
    s.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="rollout dtype (float64: for verification, slow)",
    )
    s.add_argument("--chunk-size", type=_positive_int, default=512, help="variants per chunk file (default 512)")
    s.add_argument(
        "--seed", type=_nonneg_int, default=0, help="root seed of the batch and the controls, 0 <= seed < 2**63"
    )
    s.add_argument("--device", choices=("cpu", "gpu"), default=None, help="JAX platform (default: JAX's default)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _device(name: str | None):
    """Start JAX's backend (a failure is an environment error, exit 2), then run under ``jax.default_device`` of
    the first device of platform ``name`` (cpu/gpu), if given."""
    from schurjax.runtime.environment import check_backend

    check_backend()
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

    from schurjax.runtime.environment import BackendError, check_backend, versions

    for k, v in versions().items():
        print(f"{k:<12}{v}")
    try:
        check_backend()
    except BackendError as e:
        print(f"{'backend':<12}none")
        _err(f"schurjax info: error: {e}")
        return 2
    print(f"{'backend':<12}{jax.default_backend()}")
    for d in jax.devices():
        print(f"{'device':<12}{d} ({d.device_kind})")
    prec = jax.config.jax_default_matmul_precision or "highest (schurjax sweeps; JAX's own default otherwise)"
    print(f"{'precision':<12}float32, matmul precision {prec}")
    print(f"{'x64':<12}{'enabled' if jax.config.jax_enable_x64 else 'disabled'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import jax

    from schurjax import tasks, train
    from schurjax.models import task_params
    from schurjax.store import checkpoint

    with user_errors():
        seeds = parse_seeds(args.seeds)
        try:
            task = tasks.get(args.task)
        except ValueError as e:
            raise UsageError(f"--task: {str(e).splitlines()[0].removeprefix('tasks.get: ')}") from None
    kw: dict[str, Any] = {"n_hidden": args.hidden, "progress": not args.quiet}
    if args.steps is not None:
        kw["steps"] = args.steps
    if args.batch_size is not None:
        kw["batch_size"] = args.batch_size
    if args.lr is not None:
        kw["learning_rate"] = args.lr
    _check_seeds_fit(len(seeds), task, args.hidden, kw.get("batch_size", 64))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} exists and is not a folder")
    for seed in seeds:  # before training: a file schurjax did not write is never replaced, nor found too late
        target = out / f"{task.name}-{seed}.eqx"
        if not checkpoint.written_by_schurjax(target):
            raise UsageError(
                f"--out: {target} or its .json exists and was not written by schurjax (or is a link); move it away "
                "or choose another --out"
            )
    t0 = time.perf_counter()
    with _device(args.device):
        result = train.train(task, seeds, **kw)
        batch = task.sample(jax.random.key(10_000), 256)
        paths = []
        for seed, model in zip(seeds, result.models, strict=True):
            y = jax.vmap(model)(batch.inputs)
            loss, score = float(task.loss(y, batch)), float(task.score(y, batch))
            meta = {
                "task": {"name": task.name, "params": task_params(task)},
                "seed": int(seed),
                "train": _jsonable(getattr(result, "config", {})),
                "metrics": {"eval_loss": loss, "eval_score": score, "eval_trials": 256},
            }
            paths.append(checkpoint.save_model(out / f"{task.name}-{seed}.eqx", model, meta))
            print(f"{task.name} seed {seed}: eval loss {loss:.4g}, score {score:.3f} -> {paths[-1]}")
    print(f"trained {len(paths)} model(s) in {time.perf_counter() - t0:.1f}s")
    return 0


def _check_seeds_fit(n_seeds: int, task: Any, n: int, batch_size: int) -> None:
    """Refuse more seeds than one training program can hold in memory (one line naming the largest count)."""
    from schurjax.runtime.environment import available_memory, check_backend

    check_backend()
    params = n * n + n * (task.n_in + task.n_out + 1) + task.n_out
    per_seed = 4 * (4 * params + 6 * batch_size * task.steps * (n + task.n_in + 2 * task.n_out))
    fit = available_memory() // 2 // per_seed
    if n_seeds > fit:
        raise UsageError(
            f"--seeds: {n_seeds:,} seeds need ~{n_seeds * per_seed / 2**30:.1f} GiB in one training "
            f"program; at most {fit:,} fit here (or lower --batch-size / --hidden)"
        )


def _jsonable(x: Any) -> Any:
    import json

    from schurjax.store._json import to_jsonable

    try:
        return json.loads(json.dumps(to_jsonable(x), default=str))
    except (TypeError, ValueError):
        return str(x)


def _sweep_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`schurjax.sweep` from the sweep flags."""
    return dict(
        families=args.families,
        controls=args.controls,
        control_kinds=args.control_kinds,
        control_max=args.control_max,
        trials=args.trials,
        order=args.order,
        precision=args.precision,
        dtype=args.dtype,
        chunk_size=args.chunk_size,
        seed=args.seed,
        deviation=args.deviation,
    )


def _summary_text(run: Any, criterion: str = "auto") -> str:
    from schurjax.sweeps.summary import format_summary, summarize

    return format_summary(summarize(run.table, criterion=criterion))


def _task_param(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--task-param``: VALUE read as JSON (numbers, true/false, lists) or else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. dt=20 or timing.delay=200), got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    except RecursionError:
        raise argparse.ArgumentTypeError(
            f"{key}: the value nests too deeply, expected a number, word or list"
        ) from None
    if isinstance(parsed, list | dict):
        try:
            loads(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{key}: {e}, expected a number, word or list") from None
    return key, parsed


def _task_params(pairs: list[tuple[str, Any]]) -> dict[str, Any] | None:
    """Nest ``[("timing.delay", 200), ("dt", 20)]`` into ``{"timing": {"delay": 200}, "dt": 20}``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"--task-param: {key} sets a key inside {part!r}, which already has a value")
        if last in node:
            raise UsageError(f"--task-param: {key} is given twice")
        node[last] = value
    return out or None


def cmd_sweep(args: argparse.Namespace) -> int:
    from schurjax.runtime.distributed import initialize
    from schurjax.sweeps import sweep

    t0 = time.perf_counter()
    # before anything starts JAX's backend
    initialize(args.coordinator, args.num_processes, args.process_id, timeout=args.timeout, out=args.out)
    if args.trials_file is not None and any(a == "--trials" or a.startswith("--trials=") for a in args.argv):
        from schurjax.sweeps.config import TrialsFile

        held = TrialsFile.declared(args.trials_file)[0]  # the headers only
        if held != args.trials:
            raise UsageError(
                f"--trials: {args.trials:,} disagrees with --trials-file {args.trials_file}, which holds {held:,} "
                "trials; drop --trials (the file's trials are used) or pass a file of that many"
            )
    with _device(args.device):
        run = sweep(
            args.models,
            out=args.out,
            task=args.task,
            task_params=_task_params(args.task_param),
            progress=not args.quiet,
            extra_manifest={"command": ["schurjax", *args.argv]},
            coordinator=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            timeout=args.timeout,
            trials_file=args.trials_file,
            fixed_points=args.fixed_points,
            devices=args.devices,
            **_sweep_kwargs(args),
        )
    dt = time.perf_counter() - t0
    print(_summary_text(run, args.criterion))
    print(f"\n{len(run.table)} rows -> {run.path / 'table.csv'}  ({dt:.1f}s)")
    if args.report:
        _write_report(run, quiet=True, criterion=args.criterion)
    return 0


def _write_report(run: Any, quiet: bool = False, criterion: str = "auto") -> Path | None:
    try:
        from schurjax.sweeps import report
    except ImportError as e:  # matplotlib missing
        _err(f"schurjax report: figures skipped ({e}); install the 'plot' extra: pip install 'schurjax[plot]'")
        return None
    path = report.write_report(run, criterion=criterion)
    if not quiet:
        print(f"report -> {path}")
    return path


def cmd_report(args: argparse.Namespace) -> int:
    from schurjax.store import results

    path = Path(args.run)
    if not path.exists():
        raise UsageError(f"RUN: no such folder: {path}")
    if not (path / results.MANIFEST).is_file():
        raise UsageError(f"RUN: {path} is not a run folder (no {results.MANIFEST})")
    with user_errors():
        study = "schurjax_study" in results.read_manifest(path / results.MANIFEST, "report")
    if study:  # a study folder: its report is written by the study; check it and show it
        from schurjax import studies

        with user_errors():
            try:
                st = studies.load(path)
            except FileNotFoundError as e:
                raise UsageError(f"RUN: {str(e).removeprefix('study.load: ')}; rerun its study command") from None
        print(st.report.read_text())
        print(f"report: {st.report}\nfigure: {st.figure}")
        return 0
    if not (path / results.TABLE_CSV).is_file():
        raise UsageError(f"RUN: {path} is incomplete (no {results.TABLE_CSV}); rerun its sweep command to finish it")
    with user_errors():
        run = results.load(path)
    print(_summary_text(run, args.criterion))
    if not args.no_figures:
        _write_report(run, criterion=args.criterion)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from schurjax import zoo

    t0 = time.perf_counter()
    entries = zoo.entries(n_hidden=zoo.DEFAULT_N_HIDDEN)  # the demo runs on the n = 64 models
    specs = []
    for task in dict.fromkeys(t.strip() for t in args.tasks.split(",") if t.strip()):  # each task once, in order
        seeds = sorted(int(e.seed) for e in entries if e.task == task)[: args.seeds_per_task]
        if not seeds:
            have = ", ".join(sorted({e.task for e in entries})) or "nothing"
            raise UsageError(f"--tasks: the zoo has no {task!r} model (it has {have})")
        specs += [f"zoo:{task}/{s}" for s in seeds]
    if not specs:
        raise UsageError("--tasks: no task given")
    from schurjax.sweeps import sweep

    with _device(args.device):
        run = sweep(
            specs,
            out=args.out,
            families=args.families,
            controls=DEMO["controls"],
            control_kinds=DEMO["control_kinds"],
            control_max=args.control_max,
            trials=args.trials,
            chunk_size=DEMO["chunk_size"],
            seed=DEMO["seed"],
            progress=not args.quiet,
            extra_manifest={"command": ["schurjax", *args.argv]},
        )
    t_sweep = time.perf_counter() - t0
    report = _write_report(run, quiet=True)
    dt = time.perf_counter() - t0
    kinds = ", ".join(k.replace("_", "-") for k in DEMO["control_kinds"])
    print(f"schurjax demo: Schur-coupling ablations vs {kinds} random controls (arXiv:2606.18457)")
    print(_summary_text(run))
    print(f"\n{len(run.table)} rows -> {run.path / 'table.csv'}" + (f"; report -> {report}" if report else ""))
    print(f"sweep {t_sweep:.0f}s, total {dt:.0f}s")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from schurjax.studies import study

    t0 = time.perf_counter()
    kw: dict[str, Any] = {}
    for name in (
        "tasks",
        "sizes",
        "alpha",
        "tau",
        "eps",
        "trials",
        "bootstrap",
        "seed",
        "control_kinds",
        "control_max",
        "greedy_candidates",
        "greedy_passes",
        "restriction_max",
        "null_draws",
        "margin",
        "loss_sides",
        "control_draws",
        "worst_starts",
        "worst_steps",
        "radius_iters",
        "rotations",
        "coordinate_trials",
    ):
        value = getattr(args, name)
        if value is not None:
            kw[name] = value
    if args.seeds is not None:
        kw["seeds"] = parse_seeds(args.seeds)
    with _device(args.device):
        st = study(
            out=args.out,
            quick=args.quick,
            models=args.models,
            progress=not args.quiet,
            extra_manifest={"command": ["schurjax", *args.argv]},
            **kw,
        )
    dt = time.perf_counter() - t0
    print(st.report.read_text())
    print(f"study: {len(st.models)} models -> {st.path} (report.md, figure.png, tables/, compressed/)  ({dt:.0f}s)")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    import jax

    from schurjax.pruning import compress, write_folder
    from schurjax.sweeps import resolve_models

    t0 = time.perf_counter()
    with _device(args.device):
        with user_errors():
            spec = resolve_models([args.model], task=args.task)[0]
        res = compress(
            spec.model,
            spec.task,
            key=jax.random.key(args.seed),
            criterion=args.criterion,
            tol=args.tol,
            schedule=args.schedule,
            spectrum=args.spectrum,
            maps=args.maps,
            steps=args.steps,
            lr=args.lr,
            trials=args.trials,
            decision_trials=args.decision_trials,
            bootstrap=args.bootstrap,
            baselines=not args.no_baselines,
            magnitude_finetune=not args.no_baselines,
        )
        written = write_folder(args.out, res, spec, command=["schurjax", *args.argv])
    d = res.decision
    if res.accepted:
        print(
            f"schurjax compress: {spec.id}: {len(res.removed)}/{res.settings['couplings']} couplings removed; held-out "
            f"({d['trials']} trials) dloss/loss {d['rel']:+.2%} (95 % bound {d['rel_ucb']:+.2%}), score "
            f"{d['base_score']:.3f} -> {d['score']:.3f} -> {written['model']}"
        )
    else:
        print(f"schurjax compress: {spec.id}: no set holds by the bound; nothing exported (see {written['report']})")
    print(f"report -> {written['report']}  ({time.perf_counter() - t0:.0f}s)")
    return 0


class _Terminated(BaseException):
    """SIGTERM arrived (a scheduler stopping the job): stop like Ctrl-C, with one line saying what was kept."""


class _Signals:
    """The signals that arrived while a command ran. A handler's exception can be swallowed where Python cannot
    propagate it (XLA's garbage-collection callback prints "Exception ignored ..."), so the command's end checks
    here too: a signal always stops the process with its own exit status."""

    def __init__(self) -> None:
        self.received: int | None = None

    def handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        self.reraise()

    def reraise(self) -> None:
        if self.received == signal.SIGTERM:
            raise _Terminated()
        if self.received == signal.SIGINT:
            raise KeyboardInterrupt()


def _catch_sigterm(signals: _Signals | None = None) -> Any:
    """Turn SIGTERM into :class:`_Terminated` (and SIGINT into KeyboardInterrupt, recorded) while a command runs
    (main thread only); returns the old handlers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    signals = signals or _Signals()
    return {sig: signal.signal(sig, signals.handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_sigterm(old: Any) -> None:
    if isinstance(old, dict):
        for sig, handler in old.items():
            signal.signal(sig, handler)
    elif old is not None:
        signal.signal(signal.SIGTERM, old)


def cmd_import(args: argparse.Namespace) -> int:
    from schurjax import tasks
    from schurjax.store import checkpoint

    if args.layout == "neurogym" and args.nonlinearity is None:
        raise UsageError(
            "--nonlinearity: a NeuroGym CTRNN file does not record its nonlinearity (NeuroGym's example uses relu, "
            "many trained networks tanh); pass --nonlinearity relu or tanh"
        )
    params = _task_params(args.task_param)
    if params and args.task is None:
        raise UsageError("--task-param: needs --task (the task they are parameters of)")
    with user_errors():
        task = tasks.get(args.task, **params) if params else args.task  # named by the user in this call
        try:
            path = checkpoint.import_model(
                args.checkpoint,
                args.out,
                layout=args.layout,
                alpha=args.alpha,
                form=args.form,
                nonlinearity=args.nonlinearity,
                task=task,
                prefix=args.prefix,
                readout_prefix=args.readout_prefix,
                force=args.force,
                task_source=args.task,
            )
        except ImportError as e:  # the torch extra is missing: the message names it
            raise UsageError(str(e).splitlines()[0]) from None
    model, meta = checkpoint.load_model(path)
    rec = meta.get("task") or {}
    task = rec.get("name", "none (pass --task to sweep it)")
    if rec.get("source"):  # your own task: a sweep of this file needs it named again
        task = f"{task} from {rec['source']}: sweep it with --task {rec['source']}"
    print(
        f"{args.checkpoint} -> {path} (n_in={model.n_in}, n_hidden={model.n_hidden}, n_out={model.n_out}; "
        f"{model.dynamics.describe()}{', learned h0' if model.h0 is not None else ''}; layout "
        f"{meta['source']['layout']}; task {task})"
    )
    return 0


COMMANDS = {
    "train": cmd_train,
    "import": cmd_import,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "demo": cmd_demo,
    "study": cmd_study,
    "compress": cmd_compress,
    "info": cmd_info,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``schurjax`` command; returns the exit status (0 ok, 1 internal error, 2 bad input).

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Example::

        main(["sweep", "zoo:flipflop/0", "--trials", "32", "--out", "runs/ff"])   # 0
    """
    from schurjax.runtime.environment import BackendError

    argv = list(sys.argv[1:] if argv is None else argv)
    signals = _Signals()
    old_handler = _catch_sigterm(signals)
    parser = build_parser()
    debug = os.environ.get("SCHURJAX_DEBUG", "") not in ("", "0")
    cmd = argv[0] if argv and argv[0] in COMMANDS else None
    prefix = f"schurjax {cmd}" if cmd else "schurjax"
    try:
        try:
            args = parser.parse_args(argv)
            args.argv = argv
            if args.command is None:
                parser.print_help()
                return 2
            rc = COMMANDS[args.command](args)
        except Exception:
            signals.reraise()  # a signal swallowed on the way and then an error: the signal wins
            raise
        signals.reraise()  # a signal whose exception was swallowed (e.g. in XLA's gc callback) still stops it
        return rc
    except (UsageError, InputError) as e:
        if debug:
            raise
        msg = _flag_message(e) if isinstance(e, InputError) else str(e)
        _err(msg if msg.startswith("schurjax") else f"{prefix}: error: {msg}")
        return 2
    except BackendError as e:  # the environment, not a bug
        if debug:
            raise
        _err(f"{prefix}: error: {e}")
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
        _err(
            f"{prefix}: internal error: {type(e).__name__}: {first} (a bug in schurjax; please report it with "
            "the traceback above)"
        )
        return 1
    except (KeyboardInterrupt, _Terminated) as e:
        if cmd == "train":
            what = "nothing was saved; training does not resume, rerun to start it again"
        elif cmd in ("sweep", "demo", "study"):
            what = "finished chunks are kept; rerun the same command to resume"
        else:
            what = "rerun the same command"
        _err(f"{prefix}: {'terminated' if isinstance(e, _Terminated) else 'interrupted'} ({what})")
        return 143 if isinstance(e, _Terminated) else 130
    finally:
        _restore_sigterm(old_handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
