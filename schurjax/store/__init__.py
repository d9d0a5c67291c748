"""What is on disk: run folders, their tables, model files and their imports, JSON, and the folder lock.

- :mod:`~schurjax.store.results`: run folders on disk (manifest, Schur forms, chunk files, table) and ``load``;
- :mod:`~schurjax.store.table`: the tidy table of a sweep, written as CSV, read as a pandas DataFrame;
- :mod:`~schurjax.store.checkpoint`: save and load models with a JSON sidecar, without pickle;
- :mod:`~schurjax.store.torch_io`: import of torch, NeuroGym, PsychRNN and low-rank files, and PyTorch export;
- :mod:`~schurjax.store.lock`: one writer per run folder (an ``fcntl`` lock);
- :mod:`~schurjax.store._json`: standard JSON (no NaN tokens) and atomic file writes;
- :mod:`~schurjax.store._safe_io`: writes that stay inside a run or study folder (no symlinks, exclusive temporaries);
"""
