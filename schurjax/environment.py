"""Where a run happens: package versions and the JAX backend, recorded in every run folder's manifest."""

from __future__ import annotations

import platform
from typing import Any

__all__ = ["versions", "device_info"]


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
