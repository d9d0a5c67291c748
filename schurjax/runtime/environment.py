"""Where a run happens: package versions and the JAX backend, recorded in every run folder's manifest."""

from __future__ import annotations

import os
import platform
from typing import Any

__all__ = ["versions", "device_info", "available_memory", "check_backend", "BackendError"]


def versions() -> dict[str, str]:
    """Versions of schurjax, Python, JAX and the packages it runs on (those that are installed).

    Example:
        >>> sorted(versions())[:3]
        ['equinox', 'jax', 'jaxlib']
    """
    import jax

    import schurjax

    out = {"schurjax": schurjax.__version__, "python": platform.python_version(), "jax": jax.__version__}
    for mod in ("jaxlib", "equinox", "optax", "numpy", "scipy", "pandas", "matplotlib"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an optional package that is missing or broken is just not listed
            pass
    return out


def device_info() -> dict[str, Any]:
    """The default JAX backend and its devices.

    Raises:
        RuntimeError: JAX could not start its backend (e.g. ``JAX_PLATFORMS=cuda`` without CUDA).
    """
    import jax

    devs = jax.devices()
    return {"backend": jax.default_backend(), "devices": [str(d) for d in devs], "kind": devs[0].device_kind}


def available_memory(device: Any = None) -> int:
    """Bytes a computation can still use on ``device`` (default: JAX's first device).

    GPU/TPU: the allocator's limit minus what is in use (``device.memory_stats()``). CPU: the host's available
    memory (``MemAvailable`` of ``/proc/meminfo``, else free physical pages).
    """
    import jax

    device = device or jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
        except Exception:  # noqa: BLE001 - memory_stats is optional on some backends
            pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class BackendError(RuntimeError):
    """JAX could not start its backend (e.g. ``JAX_PLATFORMS=cuda`` on a machine without CUDA)."""


def check_backend() -> None:
    """Start JAX's backend, or raise :class:`BackendError` saying which backend failed and why (one line)."""
    import jax

    try:
        jax.devices()
    except Exception as e:  # noqa: BLE001 - any failure to start the backend is an environment problem
        platforms = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or "default"
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BackendError(
            f"JAX could not start the {platforms} backend: {why} (set JAX_PLATFORMS=cpu to run on the CPU)"
        ) from e
