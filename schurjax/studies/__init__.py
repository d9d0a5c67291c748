"""The research study: which Schur couplings trained networks need, judged on held-out trials with intervals,
against random controls, across tasks, seeds and sizes; ``sj.study(...)`` and ``schurjax study`` run it.

- :mod:`~schurjax.studies.protocol`: :class:`StudyConfig`, the two criteria, keys, off-distribution inputs;
- :mod:`~schurjax.studies.stats`: BCa intervals, paired tests, multiplicity adjustment, Spearman and its null;
- :mod:`~schurjax.studies.scoring`: task scores as sums over trials (for resampling);
- :mod:`~schurjax.studies.measure`: one evaluation with per-trial sums;
- :mod:`~schurjax.studies.keep`: keep shares on the selection and held-out batches, all-nonnormal;
- :mod:`~schurjax.studies.versus`: Schur removals vs random controls of equal norm;
- :mod:`~schurjax.studies.compression`: the largest set removed together, verified and exported;
- :mod:`~schurjax.studies.restriction`: output changes off the task distribution;
- :mod:`~schurjax.studies.replay`: what the copy replay needs, and whether it forms a feed-forward line;
- :mod:`~schurjax.studies.profiles`: basis-free importance profiles compared across seeds and sizes;
- :mod:`~schurjax.studies.fragility`: the worst edit of a removal's size, and each network's robustness radius;
- :mod:`~schurjax.studies.coordinates`: how far the headlines move under other mode orders and block rotations;
- :mod:`~schurjax.studies.parts`: the parts behind one protocol (``Part``), their registry and run order;
- :mod:`~schurjax.studies.exports`: the compressed models a study writes, and the check of those on disk;
- :mod:`~schurjax.studies.report`: the study's tables and its ``report.md``;
- :mod:`~schurjax.studies.figures`: the six-panel ``figure.png``;
- :mod:`~schurjax.studies.runner`: :func:`study` (the resumable study folder);
- :mod:`~schurjax.studies.result`: :class:`Study` (a finished study) and :func:`load`.
"""

from schurjax.studies.protocol import QUICK as QUICK
from schurjax.studies.protocol import StudyConfig as StudyConfig
from schurjax.studies.result import Study as Study
from schurjax.studies.result import load as load
from schurjax.studies.runner import PARTS as PARTS
from schurjax.studies.runner import SMALL as SMALL
from schurjax.studies.runner import scratch_folder as scratch_folder
from schurjax.studies.runner import study as study

__all__ = ["study", "load", "Study", "StudyConfig", "QUICK", "SMALL", "PARTS", "scratch_folder"]
