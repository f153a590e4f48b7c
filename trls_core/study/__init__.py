"""Validation studies as data: a yaml overlay over ``params.yaml`` with named variants.

A study (``experiments/<name>.yaml``) says what to vary, not how to run it:
every variant goes through the project's own steps (spectrograms when a
variant changes them, pretraining, the evaluation protocol's units) and is
scored on validation windows held out from model selection, never on the
test split. ``flows/study.py`` runs it (``trls study experiments/<name>.yaml``).

- :mod:`~trls_core.study.overlay`: the overlay format, its variants, their params;
- :mod:`~trls_core.study.workspace`: where a variant's data, encoders and unit results live;
- :mod:`~trls_core.study.holdout`: the evaluation context that scores on held-out validation;
- :mod:`~trls_core.study.table`: the scores of a variant and the study's table.

Pure Python on files and tensors: no MLflow, no Prefect.
"""
