"""Settings of the model, pretraining, evaluation and comparison sections, and of a method.

Types and constraints only: every value, default included, is written in
params.yaml (``None`` only where it means "off" or "not given").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trls_core.settings.base import Strict
from trls_core.settings.fanout import DaskParams

__all__ = [
    "CNNParams",
    "CompareParams",
    "EvaluateParams",
    "FinetuneParams",
    "HeadParams",
    "MethodParams",
    "ModelParams",
    "PretrainParams",
    "TFRNNParams",
    "TS2VecParams",
    "TSTCCParams",
]


def _non_empty(v: list[Any]) -> list[Any]:
    if not v:
        raise ValueError("at least one value is required")
    return v


# ------------------------------------------------------------------ model
class TFRNNParams(Strict):
    dim: int = Field(gt=0)
    depth: int = Field(gt=0)
    rep_dim: int = Field(gt=0)
    rnn: Literal["gru", "lstm"]
    bidirectional: bool
    multiscale: bool
    dropout: float = Field(ge=0, lt=1)
    rnn_hidden: int | None = Field(gt=0)  # None = dim (2D->D projection when bidirectional)
    stem_stride: tuple[int, int]  # (F, T) stride of the stem conv
    freq_bands: int = Field(gt=0)  # 1 = pool all of (F, T) (docs/design.md §1.4); >1 keeps F-bands


class CNNParams(Strict):
    width: int = Field(gt=0)
    depth: int = Field(gt=0)
    rep_dim: int = Field(gt=0)


class TSTCCParams(Strict):
    """TS-TCC's time-domain conv encoder (Eldele et al. 2021)."""

    width: int = Field(gt=0)
    rep_dim: int = Field(gt=0)
    kernel_size: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    stride: int = Field(gt=0)
    # False: the representation is the pooled conv features (out_dim = 2 * rep_dim), all of
    # them trained by TS-TCC's losses; a linear head would get no gradient and stay random
    linear_head: bool


class TS2VecParams(Strict):
    """TS2Vec's dilated conv encoder (Yue et al. 2022)."""

    hidden: int = Field(gt=0)
    rep_dim: int = Field(gt=0)
    depth: int = Field(gt=0)
    kernel_size: int = Field(gt=0)


class HeadParams(Strict):
    proj_hidden: int = Field(gt=0)
    proj_dim: int = Field(gt=0)
    pred_hidden: int = Field(gt=0)


class ModelParams(Strict):
    """Which encoder and its sizes; each encoder reads only its own section.

    ``tfrnn`` and ``cnn`` read spectrograms; ``timeconv``, ``tstcc`` and
    ``ts2vec`` read the raw windows (``trls_core.models.encoder_input``).
    """

    encoder: Literal["tfrnn", "cnn", "timeconv", "tstcc", "ts2vec"]
    tfrnn: TFRNNParams
    cnn: CNNParams
    timeconv: CNNParams
    tstcc: TSTCCParams
    ts2vec: TS2VecParams
    heads: HeadParams

    def encoder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``trls_core.models.build_encoder``."""
        return getattr(self, self.encoder).model_dump()


# ------------------------------------------------------------------ pretraining
class PretrainParams(Strict):
    """Self-supervised pretraining.

    ``method``: ``byol`` (TRLS: positives only, EMA target), the baselines
    ``simclr`` (NT-Xent with negatives, on the same views), ``ts_tcc`` and
    ``ts2vec`` (raw windows, their own encoders), or ``none`` (no
    pretraining: the encoder stays at its seeded random init, for the
    supervised-from-scratch baseline that fine-tuning then trains).
    """

    dataset: str
    method: Literal["byol", "simclr", "ts_tcc", "ts2vec", "none"]
    temperature: float = Field(gt=0)  # NT-Xent temperature (simclr, ts_tcc)
    # ts2vec only: each batch first takes one random sub-window of this many samples (TS2Vec's
    # ``max_train_length``). Its temporal contrast costs O(crop length^2) per window: long windows
    # need a bound to fit a CPU box. None = the whole window.
    max_train_length: int | None = Field(ge=2)
    # the positive pair: `views` = TRLS's two views of the same window; `record` = view A of a window and
    # view B of another window of the same record (needs record ids; byol/simclr on spectrograms)
    positives: Literal["views", "record"]
    seeds: list[int]
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    warmup_epochs: int = Field(ge=0)
    tau_base: float = Field(gt=0, le=1)
    subset_fraction: float = Field(gt=0, le=1)
    device: str
    threads: int | None = Field(gt=0)  # None: torch's default
    # the forward's autocast dtype: bf16 halves activation memory traffic on a GPU (weights, gradients and
    # the optimizer stay fp32); hashed into the fingerprint only when not fp32
    precision: Literal["fp32", "bf16"]
    # torch.compile of the encoder (in place: state-dict keys unchanged); an execution detail like device,
    # not hashed
    compile: bool

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        return _non_empty(v)


# ------------------------------------------------------------------ evaluation
class FinetuneParams(Strict):
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=1)
    lr: float = Field(gt=0)
    encoder_lr: float | None = Field(gt=0)  # None: the head's lr
    weight_decay: float = Field(ge=0)
    patience: int = Field(gt=0)
    class_weight: bool
    max_steps_per_epoch: int | None = Field(gt=0)  # CPU budget: bounded rounds; None: full passes
    # what the cross-entropy is taken on: `window` (each window with its record's label) or `record`
    # (the mean window logits of each record, the score that is reported; needs evaluate.level: record)
    loss: Literal["window", "record"]
    # `frozen`: the encoder's BatchNorm layers stay in eval mode (pretrained running statistics, which
    # BYOL fitted on augmented views); `train`: they adapt to the fine-tuning batches
    batch_norm: Literal["train", "frozen"]
    # the head: `folded` (the probe's standardisation folded into one linear layer) or `batch_norm`
    # (BatchNorm1d without affine weights, started at the probe's mean/variance, then linear): a folded
    # feature with a tiny spread gets a huge weight, so encoder drift swings the logits
    head_norm: Literal["folded", "batch_norm"]


class EvaluateParams(Strict):
    dataset: str
    task: str
    # further tasks the pipeline also evaluates with the same pretrained encoders (only evaluation
    # repeats; the first task is the one a registered model is promoted on), e.g. Bonn's five_set
    also_tasks: list[str]
    seeds: list[int]
    fractions: list[float]
    c_grid: list[float]
    finetune: FinetuneParams
    tsne_points: int = Field(gt=10)
    device: str
    # CPU budget for large datasets (None = the whole split). A fixed, stratified subset (seed 0, the same
    # for every method and seed) of the train split is the labelled pool the probe and the label fractions
    # draw from; a fixed stratified subset of validation is what C and early stopping are chosen on.
    # The test split is always scored whole.
    label_pool: int | None = Field(gt=1)
    val_windows: int | None = Field(gt=1)
    # what picks the probe's C and the fine-tuning epoch on validation: the task's own score (its
    # `score_classes` in the spectrogram meta, e.g. CinC 2017's F1 over N, A, O; macro-F1 where a task
    # has none, as Bonn's) or macro-F1 over all classes
    select_by: Literal["task_score", "macro_f1"]
    # what one prediction decides: a window, or a whole record (its windows' embeddings / logits averaged;
    # label fractions are fractions of records; C and the epoch are chosen on validation records). Needs
    # record ids in the spectrogram meta and no window budget (label_pool / val_windows).
    level: Literal["window", "record"]
    # where the Prefect flows run the units: `inline` (one after another in the flow's thread,
    # flows/runners.py) or `dask` (worker processes, flows/dask_runner.py); not hashed into fingerprints
    runner: Literal["inline", "dask"]
    dask: DaskParams

    @model_validator(mode="after")
    def _record_level_whole_splits(self) -> EvaluateParams:
        if self.level == "record" and (self.label_pool is not None or self.val_windows is not None):
            raise ValueError("level 'record' scores whole records: label_pool and val_windows must be null")
        return self

    @field_validator("fractions")
    @classmethod
    def _fractions_in_range(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0 < f <= 1:
                raise ValueError(f"label fraction {f} is outside (0, 1]")
        return v


# ------------------------------------------------------------------ comparison
class MethodParams(Strict):
    """One entry of the ``methods`` registry: what it is and what it changes.

    ``overrides`` is deep-merged over the resolved params (after the profile,
    ``compare.settings`` and ``compare.datasets``); a bad key fails when the
    method's params are built (``trls_core.methods.method_params``).
    """

    description: str = Field(min_length=1)
    overrides: dict[str, Any]


class CompareParams(Strict):
    """Which methods (names in the ``methods`` section) the compare flow runs, and how.

    ``settings`` is deep-merged over the params of EVERY method (after the
    profile, before the method's own overrides): the comparison protocol,
    e.g. K pretraining runs on random training subsets (the robustness
    protocol) and a fine-tuning budget that fits all methods in the time
    box. A typo there fails like one in the sections it overrides.
    """

    methods: list[str]
    settings: dict[str, Any]
    # per dataset, merged after ``settings`` when the comparison runs on that dataset
    # (``trls compare --dataset``): its task, and a budget that fits its size
    datasets: dict[str, dict[str, Any]]

    @field_validator("methods")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(_non_empty(v))) != len(v):
            raise ValueError(f"duplicate methods in {v}")
        return v
