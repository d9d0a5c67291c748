"""Seeds and keys: root seeds (ints in ``[0, 2**63)``) mapped to PRNG keys injectively, and JAX keys to NumPy.

The package's one key convention: randomness enters as a ``jax.random.key`` (a raw uint32 ``(2,)`` key is accepted
too); where NumPy draws (host-side resampling, control directions), its generator is seeded from the key's raw
words (:func:`key_words`, :func:`numpy_rng`), so the draws follow the caller's key.

``jax.random.key(seed)`` keeps only the low 32 bits of a seed unless x64 is enabled, so ``seed = 2**32`` would give
the draws of ``seed = 0``. :func:`root_key` keeps ``jax.random.key(seed)`` for ``seed < 2**32`` (the keys every
earlier run used) and folds the high 32 bits into the key of the low 32 bits above that.

Example::

    root_key(0)            # == jax.random.key(0)
    root_key(2**32)        # != root_key(0)
"""

from __future__ import annotations

import numbers
from typing import Any

from schurjax.errors import InputError

__all__ = ["SEED_MAX", "check_seed", "root_key", "key_words", "numpy_rng"]

SEED_MAX = 2**63 - 1
"""The largest root seed (seeds are 63-bit non-negative ints)."""


def check_seed(where: str, arg: str, seed: Any) -> int:
    """``seed`` as an int in ``[0, SEED_MAX]``, or a one-line :class:`InputError` naming ``arg``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= SEED_MAX:
        shown = repr(seed) if len(repr(seed)) <= 40 else repr(seed)[:37] + "..."
        raise InputError(where, arg, f"must be an int in [0, 2**63 - 1], got {shown}")
    return int(seed)


def root_key(seed: int):
    """The PRNG key of a root seed in ``[0, 2**63)``: ``jax.random.key(seed)`` below ``2**32``, else the key of the
    low 32 bits with the high 32 bits folded in (distinct seeds give distinct keys)."""
    import jax

    seed = check_seed("root_key", "seed", seed)
    lo, hi = seed & 0xFFFFFFFF, seed >> 32
    key = jax.random.key(lo)
    return key if hi == 0 else jax.random.fold_in(jax.random.fold_in(key, 0x5EED5EED), hi)


def key_words(where: str, key: Any) -> tuple[int, ...]:
    """The raw uint32 words of one JAX key (typed ``jax.random.key`` or a raw uint32 array), as ints.

    Raises:
        TypeError: anything else, in one line naming ``where``.

    Example:
        >>> import jax
        >>> key_words("demo", jax.random.key(0)), key_words("demo", jax.random.key(2**32 - 1))
        ((0, 0), (0, 4294967295))
    """
    import jax
    import numpy as np

    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise TypeError(f"{where}: key must be a single key (shape ()), got shape {key.shape}")
        words = np.asarray(jax.random.key_data(key)).ravel()
    elif dtype is not None and np.dtype(dtype) == np.uint32 and np.ndim(key) == 1 and np.size(key) > 0:
        words = np.asarray(key).ravel()
    else:
        shown = repr(key) if len(repr(key)) <= 40 else repr(key)[:37] + "..."
        raise TypeError(f"{where}: key must be a jax.random.key(seed), got {shown}")
    return tuple(int(w) for w in words)


def numpy_rng(where: str, key: Any, *extra: int) -> Any:
    """A NumPy generator seeded from a JAX key's words (and ``extra`` ints, to draw separate streams)."""
    import numpy as np

    return np.random.default_rng(np.random.SeedSequence([*key_words(where, key), *extra]))
