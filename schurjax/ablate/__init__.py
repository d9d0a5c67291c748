"""Ablation families and random controls in ordered real Schur coordinates (host side, NumPy float64).

Every variant ``k`` is a weight edit in Schur coordinates::

    W_k = Q (T + dT_k) Q^T,        ||W_k - W||_F = ||dT_k||_F      (Q orthogonal)

A coupling ablation with a 0/1 mask ``M`` that keeps the diagonal blocks is ``dT = T ⊙ (M - 1)``; it leaves
``T + dT`` quasi-triangular with the same diagonal blocks, so every family here preserves the spectrum of ``W``.
A coupling ``T[i, j]`` (``i`` in block ``a``, ``j`` in block ``b``, ``a < b``) carries ``z_j`` into ``z_i``
(``z = Q^T h``): a directed link from the *source* block ``b`` to the *target* block ``a``.

Families (each takes a :class:`~schurjax.schur.SchurForm` first; options are keyword-only). :data:`FAMILIES` is
the one registry: its key is the ``family`` field of every label the function makes. The families that need nothing
but the Schur form are listed in :data:`SF_ONLY_FAMILIES`; top_k, cumulative and scaling need arguments:

=================  ========================  ===================================
name / ``family``  function                  arguments besides ``sf``
=================  ========================  ===================================
``single``         :func:`single_couplings`  none (see :data:`SF_ONLY_FAMILIES`)
``block``          :func:`block_couplings`   none
``band``           :func:`bands`             none
``all_nonnormal``  :func:`all_nonnormal`     none
``eigen_groups``   :func:`eigen_groups`      ``threshold`` (default 0.9)
``top_k``          :func:`top_k`             ``ks`` (required)
``cumulative``     :func:`cumulative`        ``order_idx`` (required), ``ks``
``scaling``        :func:`scaling`           ``alphas`` (required), ``which``
=================  ========================  ===================================

User masks: :func:`from_masks` (``family="mask"`` unless given). Controls, reproducible from a key (``family``
``"control"``, ``control_kind`` one of :data:`CONTROL_KINDS`): :func:`matched_norm`, :func:`matched_count`,
:func:`coupling_noise`, :func:`rank_matched` (a random edit of the removal's rank and singular values),
:func:`schur_rank1` (a random rank-1 edit inside the removal's two invariant subspaces), or several at once with
:func:`controls`. The worst edit of a given size (projected gradient ascent in JAX): :func:`worst_case` (and
:func:`worst_controls`, one per variant, the sweep's ``worst`` control kind), and the
largest size at which it still keeps the loss: :func:`robustness_radius`.

Every :class:`Variants` remembers the SchurForm it was built from (``SchurForm.fingerprint``);
:func:`schurjax.evaluate` and the controls refuse another one.

Storage is compact (:mod:`schurjax.ablate.storage`): sparse edits are kept as CSR-like arrays, prefix families
(top-k, cumulative, scaling) as one ordering plus a length and a factor per variant, and random controls as a seed
and a norm per variant; the ``(K, n, n)`` arrays are only made on demand by :meth:`Variants.delta_T` /
:meth:`Variants.masks` (a dense ``(K, n, n)`` array is held only when the user passed dense masks to
:func:`from_masks`).

- :mod:`~schurjax.ablate.storage`: compact storage segments that make each variant's ``dT`` on demand;
- :mod:`~schurjax.ablate.variants`: :class:`Variants`, an immutable set of K edits with one label per variant;
- :mod:`~schurjax.ablate.families`: the families of the table above and :func:`from_masks`;
- :mod:`~schurjax.ablate.controls`: the random controls, reproducible from a key;
- :mod:`~schurjax.ablate.worst`: the worst edit of a given size (projected gradient ascent) and the robustness radius.

Example:
    >>> import jax, numpy as np, schurjax as sj
    >>> sf = sj.ordered_schur(np.random.default_rng(0).normal(size=(8, 8)) / 3)
    >>> v = sj.ablate.single_couplings(sf)
    >>> ctrl = sj.ablate.matched_norm(jax.random.key(0), sf, v, n_per=2)
    >>> both = sj.ablate.Variants.concat(v, ctrl)
    >>> both.delta_T(slice(0, 4)).shape
    (4, 8, 8)
"""

from schurjax.ablate.controls import (
    CONTROL_KINDS,
    controls,
    coupling_noise,
    edit_singular_values,
    matched_count,
    matched_norm,
    rank_matched,
    schur_rank1,
)
from schurjax.ablate.families import (
    FAMILIES,
    SF_ONLY_FAMILIES,
    all_nonnormal,
    bands,
    block_couplings,
    cumulative,
    eigen_groups,
    from_masks,
    scaling,
    single_couplings,
    top_k,
)
from schurjax.ablate.variants import Variants
from schurjax.ablate.worst import (
    WORST_KINDS,
    RobustnessRadius,
    WorstCase,
    robustness_radius,
    worst_case,
    worst_controls,
)

__all__ = [
    "Variants",
    "single_couplings",
    "block_couplings",
    "bands",
    "all_nonnormal",
    "eigen_groups",
    "top_k",
    "cumulative",
    "scaling",
    "from_masks",
    "matched_norm",
    "matched_count",
    "coupling_noise",
    "rank_matched",
    "schur_rank1",
    "edit_singular_values",
    "controls",
    "CONTROL_KINDS",
    "worst_case",
    "worst_controls",
    "robustness_radius",
    "WorstCase",
    "RobustnessRadius",
    "WORST_KINDS",
    "FAMILIES",
    "SF_ONLY_FAMILIES",
]
