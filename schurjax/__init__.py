"""schurjax: batched Schur-coupling ablations of trained recurrent networks in JAX.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
A trained recurrent matrix is written as W = Q T Q^T in ordered real Schur coordinates; directed nonnormal
couplings (entries of T above the block diagonal) are removed, and thousands of such edited networks are rolled
out at once on the task distribution.

Modules (``tests/test_package_map.py`` checks that this list names every module and subpackage):

- :mod:`~schurjax.schur`: ordered real Schur coordinates ``W = Q T Q^T`` (host side, NumPy/SciPy, float64);
- :mod:`~schurjax._schur_reorder`: block structure, sort keys, reordering and signs behind ``ordered_schur``;
- :mod:`~schurjax.rnn`: the recurrent networks as equinox modules (``TanhRNN``, ``RateRNN``);
- :mod:`~schurjax.models`: zoo entries, files and model objects resolved to models with tasks; their fingerprints;
- :mod:`~schurjax.train`: train any ``RateRNN`` with optax Adam, many seeds in one compiled program;
- :mod:`~schurjax.pruning`: prune-and-fine-tune in Schur coordinates (``sj.compress``) against baselines;
- :mod:`~schurjax.attribution`: first-order loss change of every coupling, and screening of exact ablations;
- :mod:`~schurjax.errors`: ``InputError``, the one-line error for an argument, file or folder schurjax cannot use;
- :mod:`~schurjax.tasks`: the built-in tasks, NeuroGym tasks, your own tasks, trial batches and the registry;
- :mod:`~schurjax.zoo`: the shipped trained models, 4 tasks x seeds 0-3 x n = 64 and 128, and leaky (alpha 0.2);
- :mod:`~schurjax.ablate`: ablation families and random controls in Schur coordinates (host side);
- :mod:`~schurjax.dynamics`: batched fixed points of ablated networks, and their figures;
- :mod:`~schurjax.engine`: the batched evaluation engine: roll out thousands of variants, reduce their metrics;
- :mod:`~schurjax.sweeps`: resumable sweeps into a run folder (``sj.sweep``), their summary and ``report.html``;
- :mod:`~schurjax.store`: what is on disk: run folders, tables, model files, torch import/export, JSON, the lock;
- :mod:`~schurjax.runtime`: the machine a run is on: package versions and backend, and several processes;
- :mod:`~schurjax.studies`: the research study on held-out trials with intervals and controls (``sj.study``);
- :mod:`~schurjax._seeds`: root seeds in [0, 2**63) and their keys, one key per seed;
- :mod:`~schurjax.plot`: figures of a Schur form (matplotlib, the ``plot`` extra);
- :mod:`~schurjax.cli`: the ``schurjax`` command.
"""

__version__ = "0.1.0"

from schurjax import ablate as ablate
from schurjax import attribution as attribution
from schurjax import dynamics as dynamics
from schurjax import engine as engine
from schurjax import models as models
from schurjax import pruning as pruning
from schurjax import rnn as rnn
from schurjax import runtime as runtime
from schurjax import store as store
from schurjax import studies as studies
from schurjax import tasks as tasks
from schurjax import train as train
from schurjax import zoo as zoo
from schurjax.attribution import attribute as attribute
from schurjax.engine import SweepResult as SweepResult
from schurjax.engine import evaluate as evaluate
from schurjax.errors import InputError as InputError
from schurjax.pruning import compress as compress
from schurjax.rnn import RateRNN as RateRNN
from schurjax.rnn import TanhRNN as TanhRNN
from schurjax.schur import SchurForm as SchurForm
from schurjax.schur import ordered_schur as ordered_schur
from schurjax.store import results as results
from schurjax.store import table as table
from schurjax.store.checkpoint import load_model as load_model
from schurjax.store.checkpoint import save_model as save_model
from schurjax.studies import study as study
from schurjax.sweeps import summary as summary
from schurjax.sweeps import sweep as sweep
from schurjax.tasks import TaskBatch as TaskBatch

__all__ = [
    "__version__",
    "ablate",
    "attribution",
    "dynamics",
    "engine",
    "models",
    "results",
    "runtime",
    "store",
    "studies",
    "summary",
    "table",
    "tasks",
    "train",
    "zoo",
    "attribute",
    "pruning",
    "compress",
    "load_model",
    "save_model",
    "evaluate",
    "sweep",
    "study",
    "SweepResult",
    "InputError",
    "rnn",
    "RateRNN",
    "TanhRNN",
    "TaskBatch",
    "SchurForm",
    "ordered_schur",
]
