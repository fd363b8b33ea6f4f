"""Hyperparameter search on Optuna: the study's storage, its sampler and pruner, and the workers
that run its trials.

- :mod:`cifarlab.tuning.storage`: where studies live (the project's SQLite file, or the team's
  PostgreSQL through ``CIFARLAB_STUDY_STORAGE``), opened with a heartbeat so that a killed
  worker's trial ends FAIL.
- :mod:`cifarlab.tuning.strategies`: the samplers and pruners ``svm_tune`` can use.
- :mod:`cifarlab.tuning.study`: one study per ``svm_tune`` run: its queue of trials, what a
  worker elsewhere needs to join it, finding the open ones.
- :mod:`cifarlab.tuning.workers`: the loop a worker runs (here or on another machine) and the
  local worker processes of the stage.

What is searched, and how a trial is trained and scored, is the model's business:
:mod:`cifarlab.linear.search`. Nothing here imports MLflow: the stage logs the trials it reads
back from the study.
"""
