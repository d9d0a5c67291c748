"""The batched evaluation engine (device side): roll out thousands of weight variants, reduce their metrics.

- :mod:`~schurjax.engine.evaluation`: :func:`evaluate` / :func:`evaluate_many`, input checks, chunking, paths;
- :mod:`~schurjax.engine.options`: :class:`EngineOptions`, how a call runs (path, precision, dtype, deviation,
  compiled chunk, devices, host workers);
- :mod:`~schurjax.engine.kernels`: the compiled rollouts of one chunk (``lax.scan`` over time);
- :mod:`~schurjax.engine.base`: the unablated trajectory of a batch in float64, which deviations are measured from;
- :mod:`~schurjax.engine.result`: :class:`SweepResult`, the per-variant metrics.

The engine reads no files and writes none: run folders are :mod:`schurjax.store.results`.
"""

from schurjax.engine.evaluation import LOSSES as LOSSES
from schurjax.engine.evaluation import REFINE_CONDITION as REFINE_CONDITION
from schurjax.engine.evaluation import SHARED_MIN_NNZ as SHARED_MIN_NNZ
from schurjax.engine.evaluation import auto_chunk_size as auto_chunk_size
from schurjax.engine.evaluation import choose_path as choose_path
from schurjax.engine.evaluation import engine_options as engine_options
from schurjax.engine.evaluation import evaluate as evaluate
from schurjax.engine.evaluation import evaluate_many as evaluate_many
from schurjax.engine.evaluation import loss_type_of as loss_type_of
from schurjax.engine.options import PATHS as PATHS
from schurjax.engine.options import PRECISIONS as PRECISIONS
from schurjax.engine.options import EngineOptions as EngineOptions
from schurjax.engine.result import METRICS as METRICS
from schurjax.engine.result import SweepResult as SweepResult

__all__ = [
    "evaluate",
    "evaluate_many",
    "EngineOptions",
    "engine_options",
    "SweepResult",
    "METRICS",
    "LOSSES",
    "PATHS",
    "PRECISIONS",
    "REFINE_CONDITION",
    "SHARED_MIN_NNZ",
    "auto_chunk_size",
    "choose_path",
    "loss_type_of",
]
