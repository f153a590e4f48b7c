"""Downstream evaluation: embedding, linear probe, label-fraction fine-tuning.

Pure functions on tensors/arrays: no MLflow, no Prefect, no file I/O. The
caller (a stage or a flow) passes data in, gets plain dicts back (JSON-able
except where a docstring says otherwise) and logs them wherever it likes
through the optional callbacks.

Model selection only ever looks at the *validation* split (the C of the
linear probe, the best fine-tuning epoch); the test split is touched once,
at the end, to report. That is what makes the numbers comparable with
published ones.

- :mod:`~trls_core.evaluate.embedding`: :func:`embed` (frozen representations);
- :mod:`~trls_core.evaluate.probing`: :func:`linear_probe` (validation-tuned logistic regression);
- :mod:`~trls_core.evaluate.finetuning`: :func:`finetune` (LP-FT on a label fraction), :func:`fraction_key`;
- :mod:`~trls_core.evaluate.lpft`: the encoder + linear head and its probe-fitted start;
- :mod:`~trls_core.evaluate.record_batches`: batches of whole records for the record-level loss.
"""

from trls_core.evaluate.embedding import embed
from trls_core.evaluate.finetuning import finetune, fraction_key
from trls_core.evaluate.probing import linear_probe

__all__ = ["embed", "finetune", "fraction_key", "linear_probe"]
