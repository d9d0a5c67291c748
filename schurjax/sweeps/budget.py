"""Sizes a sweep can hold: the largest trial count and chunk size that fit the device's memory, checked before
anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schurjax.errors import InputError
from schurjax.runtime.environment import available_memory

__all__ = ["check_sizes", "bytes_per_trial", "bytes_per_variant"]


def bytes_per_trial(n: int, steps: int, n_in: int, n_out: int) -> int:
    """Memory one trial takes in an evaluation: the batch (host and device copies), the input drive of one model,
    and the states and outputs of a minimal chunk of 8 variants (float32)."""
    return 4 * steps * (3 * (n_in + 2 * n_out) + n + 8 * (n + 3 * n_out)) + 8 * 8 * n


def bytes_per_variant(steps: int, trials: int) -> int:
    """Host memory one variant of a chunk file takes: per-step metric sums (float64), per-trial final distances,
    its edit and its share of the chunk file."""
    return 8 * (4 * steps + trials) + 1024


def check_sizes(plans: Sequence[Any], config: Any, *, memory: int | None = None) -> None:
    """Refuse a trial count or chunk size that cannot fit, naming the largest size that does.

    Args:
        plans: the sweep's model plans (``spec.task`` and ``sf.n`` are read).
        config: the sweep config (``trials``, ``chunk_size``).
        memory: bytes available (default: :func:`schurjax.runtime.environment.available_memory` of the default device).

    Raises:
        InputError: ``trials`` or ``chunk_size`` too large (one line naming the argument and the bound).
    """
    memory = available_memory() if memory is None else int(memory)
    budget = max(memory // 2, 1)
    worst = max(
        plans,
        key=lambda p: bytes_per_trial(
            int(p.sf.n), int(p.spec.task.steps), int(p.spec.task.n_in), int(p.spec.task.n_out)
        ),
    )
    task = worst.spec.task
    per_trial = bytes_per_trial(int(worst.sf.n), int(task.steps), int(task.n_in), int(task.n_out))
    max_trials = budget // per_trial
    if max_trials < 1:  # not one trial fits: the task's length (or the model's size) is what is too large
        raise InputError(
            "sweep",
            "task",
            f"task {task.name!r}: one trial of {task.steps:,} steps at n = {worst.sf.n} needs {per_trial:,} bytes, "
            f"more than the {memory / 2**30:.1f} GiB available; expected a task with fewer steps",
        )
    if config.trials > max_trials:
        raise InputError(
            "sweep",
            "trials",
            f"must be at most {max_trials:,} here ({per_trial:,} bytes per trial of "
            f"{task.steps} steps at n = {worst.sf.n}; {memory / 2**30:.1f} GiB available), got "
            f"{config.trials:,}",
        )
    per_variant = max(bytes_per_variant(int(p.spec.task.steps), config.trials) for p in plans)
    max_chunk = max(budget // 2 // per_variant, 1)
    if config.chunk_size > max_chunk:
        raise InputError(
            "sweep",
            "chunk_size",
            f"must be at most {max_chunk:,} here ({per_variant:,} bytes per "
            f"variant; {memory / 2**30:.1f} GiB available), got {config.chunk_size:,}",
        )
