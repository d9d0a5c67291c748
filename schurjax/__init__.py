"""schurjax: batched Schur-coupling ablations of trained tanh RNNs in JAX.

Method: S. Dräger, "Task-Restricted Symmetries in Recurrent Weight Space", arXiv:2606.18457 (2026).
A trained recurrent matrix is written as W = Q T Q^T in ordered real Schur coordinates; directed nonnormal
couplings (entries of T above the block diagonal) are removed, and thousands of such edited networks are rolled
out at once on the task distribution.
"""

__version__ = "0.1.0"

from schurjax import ablate as ablate
from schurjax import attribution as attribution
from schurjax import dynamics as dynamics
from schurjax import engine as engine
from schurjax import pruning as pruning
from schurjax import results as results
from schurjax import rnn as rnn
from schurjax import studies as studies
from schurjax import summary as summary
from schurjax import table as table
from schurjax import tasks as tasks
from schurjax import train as train
from schurjax import zoo as zoo
from schurjax.attribution import attribute as attribute
from schurjax.checkpoint import load_model as load_model
from schurjax.checkpoint import save_model as save_model
from schurjax.engine import SweepResult as SweepResult
from schurjax.engine import evaluate as evaluate
from schurjax.errors import InputError as InputError
from schurjax.pruning import compress as compress
from schurjax.rnn import RateRNN as RateRNN
from schurjax.rnn import TanhRNN as TanhRNN
from schurjax.schur import SchurForm as SchurForm
from schurjax.schur import ordered_schur as ordered_schur
from schurjax.studies import study as study
from schurjax.sweeps import sweep as sweep
from schurjax.tasks import TaskBatch as TaskBatch

__all__ = [
    "__version__",
    "ablate",
    "attribution",
    "dynamics",
    "engine",
    "results",
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
