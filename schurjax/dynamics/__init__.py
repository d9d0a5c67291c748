"""Dynamics of ablated networks: batched fixed points of thousands of Schur-coupling variants, and their figures.

- :mod:`~schurjax.dynamics.finder`: find, polish, classify and match the fixed points of every variant in one batch;
- :mod:`~schurjax.dynamics.points`: fixed points of one network: distinct points, Jacobian class, matching;
- :mod:`~schurjax.dynamics.figures`: figures of an ablation's mechanism (the ``plot`` extra; not imported here).

Example::

    fp = sj.dynamics.fixed_points(model, sf, sj.ablate.single_couplings(sf), key=jax.random.key(0), task=task)
    fp.points[0].shape, fp.stable[0], fp.lost
"""

from schurjax.dynamics.finder import FixedPoints as FixedPoints
from schurjax.dynamics.finder import fixed_point_columns as fixed_point_columns
from schurjax.dynamics.finder import fixed_points as fixed_points
from schurjax.dynamics.finder import solve_points as solve_points
from schurjax.dynamics.finder import trajectory_states as trajectory_states
from schurjax.dynamics.points import KINDS as KINDS
from schurjax.dynamics.points import STATUS as STATUS
from schurjax.dynamics.points import PointSet as PointSet
from schurjax.dynamics.points import classify as classify

__all__ = [
    "KINDS",
    "STATUS",
    "FixedPoints",
    "PointSet",
    "classify",
    "fixed_point_columns",
    "fixed_points",
    "solve_points",
    "trajectory_states",
]


def __getattr__(name: str):
    """``sj.dynamics.figures`` on first use (it imports matplotlib, which ``import schurjax`` does not)."""
    if name == "figures":
        import importlib

        return importlib.import_module("schurjax.dynamics.figures")
    raise AttributeError(f"module 'schurjax.dynamics' has no attribute {name!r}")
