"""Typed parameters: params.yaml validated by pydantic.

params.yaml is the one source of settings. Each stage reads one section and
DVC declares exactly that section, so a change reruns only what it affects.
Every model forbids unknown keys: a typo fails loudly with the dotted key
name instead of silently falling back to a default.

Profiles (``profiles.<name>`` in params.yaml) are deep-merged over the base
sections; ``small`` (the default, a 2-core CPU budget) and ``paper`` (GPU
sizes) ship with the project. Selection order: explicit argument, then the
``TRLS_PROFILE`` environment variable, then the top-level ``profile`` key.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trls_core.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- data stages
class FetchParams(_Strict):
    """Where raw files come from. ``mirror`` is a folder holding ``bonn-eeg/`` etc.

    The environment variable ``TRLS_DATA_MIRROR`` overrides it, so a machine
    without internet can point at a local copy without editing params.
    """

    mirror: str | None = None
    retries: int = Field(3, ge=0)
    timeout_s: float = Field(60.0, gt=0)


class ParquetParams(_Strict):
    window: int = Field(178, gt=0)
    stride: int | None = Field(None, gt=0)
    protocol: Literal["random", "grouped"] = "random"
    val_frac: float = Field(0.16, gt=0, lt=1)
    test_frac: float = Field(0.2, gt=0, lt=1)
    seed: int = 42


class SpectrogramParams(_Strict):
    n_fft: int = Field(32, gt=1)
    hop: int = Field(4, gt=0)
    win_length: int | None = None
    window: Literal["hann", "hamming", "blackman", "rect"] = "hann"
    center: bool = True
    log_eps: float = Field(1e-3, gt=0)
    fmax_bin: int | None = Field(None, gt=0)
    normalisation: Literal["train_per_freq", "train_global", "per_window", "none"] = "train_per_freq"
    dtype: Literal["float32", "float16"] = "float32"


class DatasetParams(_Strict):
    """Bonn epilepsy data-stage settings (section ``epilepsy`` in params.yaml)."""

    fetch: FetchParams = FetchParams()
    parquet: ParquetParams = ParquetParams()
    spectrogram: SpectrogramParams = SpectrogramParams()


# ------------------------------------------------------- cinc2017 (PhysioNet ECG)
CINC2017_URL = "https://physionet.org/files/challenge-2017/1.0.0/training2017.zip"


class Cinc2017FetchParams(_Strict):
    """Source of ``training2017.zip``: ``mirror`` (holding ``cinc2017/``) or ``url``.

    ``expected_records`` is checked against the parsed ``RECORDS`` list, so a
    wrong or partial archive fails the fetch; ``null`` skips the check (tests).
    """

    mirror: str | None = None
    url: str = CINC2017_URL
    retries: int = Field(3, ge=0)
    timeout_s: float = Field(300.0, gt=0)
    expected_records: int | None = Field(8528, gt=0)


class Cinc2017ParquetParams(_Strict):
    """Windows of the single-lead ECG records, grouped splits.

    ``window``/``stride`` count samples at ``target_fs`` (records at another
    rate are resampled with ``resample_poly``). ``pad``: ``drop`` drops each
    record's trailing remainder and rejects records shorter than a window;
    ``zero`` zero-pads the remainder into one last window; ``end`` adds one last
    window ending at the record's end (overlapping, all real signal: what a
    record-level score should pool) and zero-pads only records shorter than
    a window. Splits always keep
    a record in one split, stratified by the record label. The stage fails
    when fewer than ``min_keep_fraction`` of the labelled records survive.
    """

    window: int = Field(1500, gt=0)
    stride: int | None = Field(None, gt=0)
    pad: Literal["drop", "zero", "end"] = "drop"
    target_fs: float = Field(300.0, gt=0)
    channels: list[str] = Field(default_factory=lambda: ["ECG"])
    val_frac: float = Field(0.15, gt=0, lt=1)
    test_frac: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    flat_std_mv: float = Field(1e-3, ge=0)
    min_keep_fraction: float = Field(0.9, ge=0, le=1)
    chunk_records: int = Field(512, gt=0)


class Cinc2017Params(_Strict):
    """PhysioNet/CinC 2017 data-stage settings (section ``cinc2017``)."""

    fetch: Cinc2017FetchParams = Cinc2017FetchParams()
    parquet: Cinc2017ParquetParams = Cinc2017ParquetParams()
    spectrogram: SpectrogramParams = SpectrogramParams(n_fft=64, hop=32)


# ------------------------------------------------- sleepedf (PhysioNet sleep-edfx)
class SleepEdfFetchParams(_Strict):
    """Which Sleep-EDF (sleep-cassette) recordings to fetch, and from where.

    ``subjects``/``recordings`` are MNE's ``sleep_physionet.age.fetch_data``
    arguments (subjects 0..82, nights 1 and 2; a few nights do not exist and
    are listed as missing in the manifest). ``mirror`` is a folder holding
    ``sleep-edfx/`` with the PhysioNet file names; without one the files are
    downloaded through MNE (needs internet).
    """

    mirror: str | None = None
    subjects: list[int] = Field(default_factory=lambda: list(range(20)))
    recordings: list[int] = Field(default_factory=lambda: [1, 2])
    timeout_s: float = Field(10.0, gt=0)  # reachability check before downloading

    @field_validator("subjects", "recordings")
    @classmethod
    def _non_empty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one value is required")
        return v


class SleepEdfParquetParams(_Strict):
    """30 s epochs of the EEG, labelled from the hypnogram, split by subject.

    ``epoch_s`` × ``target_fs`` samples per window (3000 at 100 Hz). Stages
    W/N1/N2/N3/REM (Rechtschaffen & Kales 3 and 4 merged into N3);
    ``Sleep stage ?`` and ``Movement time`` epochs are dropped.
    ``trim_wake_min``: keep at most this many minutes of wake before the
    first and after the last sleep epoch (null keeps all). A recording is
    rejected when its hypnogram covers less than ``min_hypnogram_coverage``
    of its epochs; the stage fails when fewer than ``min_keep_fraction`` of
    the recordings survive.
    """

    channels: list[str] = Field(default_factory=lambda: ["EEG Fpz-Cz"])
    target_fs: float = Field(100.0, gt=0)
    epoch_s: float = Field(30.0, gt=0)
    trim_wake_min: float | None = Field(30.0, ge=0)
    min_hypnogram_coverage: float = Field(0.9, ge=0, le=1)
    val_frac: float = Field(0.15, gt=0, lt=1)
    test_frac: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    flat_std_uv: float = Field(0.1, ge=0)
    min_keep_fraction: float = Field(0.9, ge=0, le=1)


class SleepEdfParams(_Strict):
    """Sleep-EDF data-stage settings (section ``sleepedf``)."""

    fetch: SleepEdfFetchParams = SleepEdfFetchParams()
    parquet: SleepEdfParquetParams = SleepEdfParquetParams()
    spectrogram: SpectrogramParams = SpectrogramParams(n_fft=200, hop=100)


# ------------------------------------------------ mitdb (MIT-BIH Arrhythmia ECG)
class MitdbFetchParams(_Strict):
    """Which MIT-BIH records to fetch (``null`` = all 48), from a mirror or PhysioNet.

    ``mirror`` holds ``mitdb/`` with the WFDB files (``100.hea``, ``100.dat``,
    ``100.atr``, ...); without one ``wfdb.dl_database`` downloads them.
    ``expected_records`` is checked when ``records`` is null.
    """

    mirror: str | None = None
    records: list[str] | None = None
    expected_records: int | None = Field(48, gt=0)
    timeout_s: float = Field(10.0, gt=0)  # reachability check before downloading


class MitdbParquetParams(_Strict):
    """Beat-centred windows, AAMI classes, inter-patient (DS1/DS2) split by default.

    A window is ``before`` samples before to ``after`` samples after the
    annotated R peak, counted at ``target_fs``. ``protocol``:
    ``inter_patient`` (de Chazal 2004: test = DS2, train/val = DS1 with
    ``val_frac`` of its records in val) or ``grouped`` (records drawn at
    random into train/val/test by ``val_frac``/``test_frac``).
    ``exclude_records`` (paced by default) are left out, not rejected.
    """

    leads: list[str] = Field(default_factory=lambda: ["MLII"])
    target_fs: float = Field(360.0, gt=0)
    before: int = Field(90, ge=0)
    after: int = Field(162, gt=0)
    protocol: Literal["inter_patient", "grouped"] = "inter_patient"
    exclude_records: list[str] = Field(default_factory=lambda: ["102", "104", "107", "217"])
    val_frac: float = Field(0.2, gt=0, lt=1)
    test_frac: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    flat_std_mv: float = Field(1e-3, ge=0)
    min_keep_fraction: float = Field(0.9, ge=0, le=1)


class MitdbParams(_Strict):
    """MIT-BIH Arrhythmia data-stage settings (section ``mitdb``)."""

    fetch: MitdbFetchParams = MitdbFetchParams()
    parquet: MitdbParquetParams = MitdbParquetParams()
    spectrogram: SpectrogramParams = SpectrogramParams(n_fft=64, hop=8)


# ------------------------------------------------------------ your own data
class CustomFetchParams(_Strict):
    """``path``: the user's folder (relative to the project root, or absolute)."""

    path: str


class CustomParquetParams(_Strict):
    """How to read the user's windows; see docs/datasets/custom.md.

    ``format``: ``auto`` picks by file extension. ``fs`` is required when the
    files carry none. Rows/records are split by ``record_id`` (or
    ``subject_id`` with ``group_by: subject``); a file may also carry its own
    ``split`` column (``split_from_file: true``).
    """

    format: Literal["auto", "parquet", "csv", "npz", "ucr"] = "auto"
    fs: float | None = Field(None, gt=0)
    target_fs: float | None = Field(None, gt=0)
    channels: list[str] | None = None
    group_by: Literal["record", "subject", "window"] = "record"
    split_from_file: bool = False
    val_frac: float = Field(0.15, gt=0, lt=1)
    test_frac: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    class_names: list[str] | None = None
    min_keep_fraction: float = Field(0.9, ge=0, le=1)


class CustomDatasetParams(_Strict):
    """A user dataset: a top-level params.yaml section with ``kind: custom``."""

    kind: Literal["custom"] = "custom"
    fetch: CustomFetchParams
    parquet: CustomParquetParams = CustomParquetParams()
    spectrogram: SpectrogramParams = SpectrogramParams()


DatasetSection = DatasetParams | Cinc2017Params | SleepEdfParams | MitdbParams | CustomDatasetParams


# ------------------------------------------------------------------ training
class TFRNNParams(_Strict):
    dim: int = Field(32, gt=0)
    depth: int = Field(3, gt=0)
    rep_dim: int = Field(128, gt=0)
    rnn: Literal["gru", "lstm"] = "gru"
    bidirectional: bool = True
    multiscale: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)
    rnn_hidden: int | None = Field(None, gt=0)  # None = dim (2D->D projection when bidirectional)
    stem_stride: tuple[int, int] = (1, 1)  # (F, T) stride of the stem conv
    freq_bands: int = Field(1, gt=0)  # 1 = pool all of (F, T) (docs/design.md §1.4); >1 keeps F-bands


class CNNParams(_Strict):
    width: int = Field(32, gt=0)
    depth: int = Field(3, gt=0)
    rep_dim: int = Field(128, gt=0)


class TSTCCParams(_Strict):
    """TS-TCC's time-domain conv encoder (Eldele et al. 2021), sized for a 2-core CPU."""

    width: int = Field(32, gt=0)
    rep_dim: int = Field(128, gt=0)
    kernel_size: int = Field(8, gt=0)
    dropout: float = Field(0.35, ge=0, lt=1)
    stride: int = Field(1, gt=0)
    # False: the representation is the pooled conv features (out_dim = 2 * rep_dim), all of
    # them trained by TS-TCC's losses; a linear head would get no gradient and stay random
    linear_head: bool = False


class TS2VecParams(_Strict):
    """TS2Vec's dilated conv encoder (Yue et al. 2022), sized for a 2-core CPU."""

    hidden: int = Field(32, gt=0)
    rep_dim: int = Field(128, gt=0)
    depth: int = Field(5, gt=0)
    kernel_size: int = Field(3, gt=0)


class HeadParams(_Strict):
    proj_hidden: int = Field(256, gt=0)
    proj_dim: int = Field(64, gt=0)
    pred_hidden: int = Field(256, gt=0)


class ModelParams(_Strict):
    """Which encoder and its sizes; each encoder reads only its own section.

    ``tfrnn`` and ``cnn`` read spectrograms; ``timeconv``, ``tstcc`` and
    ``ts2vec`` read the raw windows (``trls_core.models.encoder_input``).
    """

    encoder: Literal["tfrnn", "cnn", "timeconv", "tstcc", "ts2vec"] = "tfrnn"
    tfrnn: TFRNNParams = TFRNNParams()
    cnn: CNNParams = CNNParams()
    timeconv: CNNParams = CNNParams()
    tstcc: TSTCCParams = TSTCCParams()
    ts2vec: TS2VecParams = TS2VecParams()
    heads: HeadParams = HeadParams()

    def encoder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``trls_core.models.build_encoder``."""
        return getattr(self, self.encoder).model_dump()


class AugmentOp(BaseModel):
    """One augmentation op; op-specific keys are checked by ``augment.build_view``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    p: float = Field(1.0, ge=0, le=1)


class RawAugmentParams(_Strict):
    """TS-TCC's weak/strong views of raw windows (``trls_core.augment_raw.RawTwoViews``).

    For the raw-input methods (byol/simclr/ts_tcc on ``timeconv``/``tstcc``);
    keys are checked by ``RawTwoViews``. Windows are standardised per
    channel, so TS-TCC's HAR-scale values apply (its epilepsy values,
    0.001, were for unscaled microvolts).
    """

    weak: dict[str, int | float] = Field(default_factory=lambda: {"scale_sigma": 1.1, "scale_mean": 2.0})
    strong: dict[str, int | float] = Field(default_factory=lambda: {"max_segments": 5, "jitter_sigma": 0.8})


class AugmentParams(_Strict):
    view_a: list[AugmentOp]
    view_b: list[AugmentOp]
    raw: RawAugmentParams = RawAugmentParams()

    def as_dicts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return ([op.model_dump() for op in self.view_a], [op.model_dump() for op in self.view_b])


class PretrainParams(_Strict):
    """Self-supervised pretraining.

    ``method``: ``byol`` (TRLS: positives only, EMA target), the baselines
    ``simclr`` (NT-Xent with negatives, on the same views), ``ts_tcc`` and
    ``ts2vec`` (raw windows, their own encoders), or ``none`` (no
    pretraining: the encoder stays at its seeded random init, for the
    supervised-from-scratch baseline that fine-tuning then trains).
    """

    dataset: str = "epilepsy"
    method: Literal["byol", "simclr", "ts_tcc", "ts2vec", "none"] = "byol"
    temperature: float = Field(0.2, gt=0)  # NT-Xent temperature (simclr, ts_tcc)
    # ts2vec only: each batch first takes one random sub-window of this many samples (TS2Vec's
    # ``max_train_length``). Its temporal contrast costs O(crop length^2) per window: long windows
    # (CinC's 1,500 samples) need a bound to fit a CPU box. None = the whole window.
    max_train_length: int | None = Field(None, ge=2)
    # the positive pair: `views` = TRLS's two views of the same window; `record` = view A of a window and
    # view B of another window of the same record (needs record ids; byol/simclr on spectrograms)
    positives: Literal["views", "record"] = "views"
    seeds: list[int] = Field(default_factory=lambda: [0])
    epochs: int = Field(20, gt=0)
    batch_size: int = Field(128, gt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    tau_base: float = Field(0.99, gt=0, le=1)
    subset_fraction: float = Field(1.0, gt=0, le=1)
    device: str = "auto"
    threads: int | None = Field(None, gt=0)

    @field_validator("seeds")
    @classmethod
    def _non_empty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one seed is required")
        return v


class FinetuneParams(_Strict):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=1)
    lr: float = Field(1e-3, gt=0)
    encoder_lr: float | None = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(5, gt=0)
    class_weight: bool = False
    max_steps_per_epoch: int | None = Field(None, gt=0)  # CPU budget: bounded rounds, not full passes


class EvaluateParams(_Strict):
    dataset: str = "epilepsy"
    task: str = "binary"
    # further tasks the pipeline also evaluates with the same pretrained encoders (only evaluation
    # repeats; the first task is the one a registered model is promoted on), e.g. Bonn's five_set
    also_tasks: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    fractions: list[float] = Field(default_factory=lambda: [0.01, 0.05, 0.1, 0.5, 1.0])
    c_grid: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    finetune: FinetuneParams = FinetuneParams()
    tsne_points: int = Field(2000, gt=10)
    device: str = "auto"
    # CPU budget for large datasets (null = the whole split). A fixed, stratified subset (seed 0, the same
    # for every method and seed) of the train split is the labelled pool the probe and the label fractions
    # draw from; a fixed stratified subset of validation is what C and early stopping are chosen on.
    # The test split is always scored whole.
    label_pool: int | None = Field(None, gt=1)
    val_windows: int | None = Field(None, gt=1)
    # what picks the probe's C and the fine-tuning epoch on validation: the task's own score (its
    # `score_classes` in the spectrogram meta, e.g. CinC 2017's F1 over N, A, O; macro-F1 where a task
    # has none, as Bonn's) or macro-F1 over all classes (bench/results/cinc_select_val.json)
    select_by: Literal["task_score", "macro_f1"] = "task_score"
    # what one prediction decides: a window, or a whole record (its windows' embeddings / logits averaged;
    # label fractions are fractions of records; C and the epoch are chosen on validation records). Needs
    # record ids in the spectrogram meta and no window budget (label_pool / val_windows).
    level: Literal["window", "record"] = "window"

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


class CompareParams(_Strict):
    """Which methods (``trls_core.methods`` registry names) the compare flow runs, and how.

    ``settings`` is deep-merged over the params of EVERY method (after the
    profile, before the method's own overrides): the comparison protocol,
    e.g. K pretraining runs on random training subsets (the robustness
    protocol) and a fine-tuning budget that fits all methods in the time
    box. A typo there fails like one in the sections it overrides.
    """

    methods: list[str] = Field(default_factory=lambda: ["trls", "trls_cnn"])
    settings: dict[str, Any] = Field(default_factory=dict)
    # per dataset, merged after ``settings`` when the comparison runs on that dataset
    # (``trls compare --dataset``): its task, and a budget that fits its size (CinC 2017 has 5x Bonn's windows)
    datasets: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("methods")
    @classmethod
    def _known_unique(cls, v: list[str]) -> list[str]:
        from trls_core.methods import METHODS

        if not v:
            raise ValueError("at least one method is required")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate methods in {v}")
        unknown = [m for m in v if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown} (known: {sorted(METHODS)})")
        return v


class Params(_Strict):
    """The whole params.yaml after the profile has been merged in."""

    profile: str = "small"
    datasets: list[str]
    epilepsy: DatasetParams = DatasetParams()
    cinc2017: Cinc2017Params = Cinc2017Params()
    sleepedf: SleepEdfParams = SleepEdfParams()
    mitdb: MitdbParams = MitdbParams()
    custom: dict[str, CustomDatasetParams] = Field(default_factory=dict)
    model: ModelParams = ModelParams()
    augment: AugmentParams
    pretrain: PretrainParams = PretrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    compare: CompareParams = CompareParams()

    @model_validator(mode="before")
    @classmethod
    def _collect_custom(cls, data: Any) -> Any:
        """Move top-level ``<name>: {kind: custom, ...}`` sections into ``custom``.

        DVC's ``foreach`` declares params ``${item}.fetch`` etc., so a user
        dataset must be a top-level section named after it, like the built-in
        ones; the ``kind`` key tells it apart from a typo.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        custom = dict(data.get("custom") or {})
        for key in list(data):
            value = data[key]
            if key not in cls.model_fields and isinstance(value, dict) and value.get("kind") == "custom":
                custom[key] = data.pop(key)
        if custom:
            data["custom"] = custom
        return data

    @model_validator(mode="after")
    def _datasets_known(self) -> Params:
        unknown = [d for d in self.datasets if d not in self.known_datasets()]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown} in `datasets` (known: {self.known_datasets()})")
        clash = sorted(set(self.custom) & KNOWN_DATASETS)
        if clash:
            raise ValueError(f"custom dataset name(s) {clash} clash with built-in datasets")
        return self

    def known_datasets(self) -> list[str]:
        """Built-in datasets plus the user's ``kind: custom`` sections."""
        return sorted(KNOWN_DATASETS | set(self.custom))

    def dataset(self, name: str) -> DatasetSection:
        """The data-stage section of ``name``; unknown names fail with the known ones."""
        if name in self.custom:
            return self.custom[name]
        section = getattr(self, name, None) if name in KNOWN_DATASETS else None
        if not isinstance(section, (DatasetParams, Cinc2017Params, SleepEdfParams, MitdbParams)):
            raise ConfigError(f"unknown dataset {name!r}: known datasets are {self.known_datasets()}")
        return section


KNOWN_DATASETS = frozenset({"epilepsy", "cinc2017", "sleepedf", "mitdb"})


# ------------------------------------------------------------------- loading
def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (lists are replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        loc = list(e["loc"])
        if loc[:1] == ["custom"] and len(loc) > 1:  # user sections live at the top level of params.yaml
            loc = loc[1:]
        key = ".".join(str(p) for p in loc)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        show_input = bool(loc) and e["type"] not in ("missing", "extra_forbidden")
        lines.append(f"  {key or 'params'}: {msg}" + (f" (got {e['input']!r})" if show_input else ""))
    return "\n".join(lines)


def read_raw_params(path: str | os.PathLike[str] = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read params.yaml as a plain dict, with a clear error for a missing/bad file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"params file not found: {p.resolve()}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return raw


def parse_overrides(sets: list[str] | None) -> dict[str, Any]:
    """``["pretrain.epochs=3", "model.tfrnn.stem_stride=[2, 2]"]`` -> a nested dict to merge.

    Values are YAML (``3``, ``[2, 2]``, ``null``, ``record``); keys are the
    dotted paths of params.yaml. Why: a validation study is a settings
    overlay on the project's own commands, not a script with its own config.
    """
    out: dict[str, Any] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or any(not k for k in key.strip().split(".")):
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. pretrain.epochs=3")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
        node = out
        parts = key.strip().split(".")
        for k in parts[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is set as a value by another --set")
        node[parts[-1]] = parsed
    return out


def resolve_params(
    raw: dict[str, Any],
    profile: str | None = None,
    source: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
) -> Params:
    """Merge the chosen profile over the base sections, then ``overrides`` (``--set``), and validate."""
    raw = dict(raw)
    profiles = raw.pop("profiles", {}) or {}
    name = profile or os.environ.get("TRLS_PROFILE") or raw.get("profile", "small")
    if name not in profiles:
        raise ConfigError(f"{source}: unknown profile {name!r} (profiles: {sorted(profiles)})")
    merged = deep_merge(raw, profiles[name] or {})
    if overrides:
        merged = deep_merge(merged, overrides)
        source = f"{source} with --set"
    merged["profile"] = name
    try:
        return Params.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, f"{source} (profile {name!r})")) from None


def load_params(
    path: str | os.PathLike[str] = DEFAULT_PARAMS, profile: str | None = None, sets: list[str] | None = None
) -> Params:
    """Load and validate params.yaml (profile merged in, then the ``--set`` overrides)."""
    return resolve_params(read_raw_params(path), profile=profile, source=str(path), overrides=parse_overrides(sets))


def data_mirror(fetch: FetchParams | Cinc2017FetchParams | SleepEdfFetchParams | MitdbFetchParams) -> Path | None:
    """The local mirror folder: ``TRLS_DATA_MIRROR`` wins over params."""
    value = os.environ.get("TRLS_DATA_MIRROR") or fetch.mirror
    return Path(value).expanduser() if value else None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (for run parameters and reports)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
