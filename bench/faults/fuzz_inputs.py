"""Hypothesis strategies for bad inputs of every reader (used by ``fuzz.py`` and tests/unit/test_fuzz_readers.py).

Each strategy draws a :class:`Case`: the files a reader will find (name ->
bytes) plus the settings it reads them with, and the names a useful error
must mention (the file, the record, the key). Values are drawn from two
pools: the cases a person would try first (``--`` as a header gain, ``inf``
as a rate, a v7.3 ``.mat``, ``n_channels`` 0, an ``fs`` array) and
arbitrary text / bytes / numbers around them, so a run both repeats the
known failures and looks for new ones. Sizes stay small: the point is the
shape of the input, and 500 inputs must fit in a couple of minutes on 2 cores.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

#: Rows of the custom formats and samples of a CinC record / Bonn segment: small on purpose.
WINDOW = 12
RECORD_SAMPLES = 600
BONN_SAMPLES = 16
FUZZ_RECORD = "A00003"  # the record the WFDB cases break; A00001 and A00002 stay good


@dataclass(frozen=True)
class Case:
    """One generated input: files, the settings to read them with, and what an error must name."""

    files: dict[str, bytes]
    names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def digest(self, reader: str) -> str:
        """Identity of the input (files and settings): distinct inputs are counted by this."""
        h = hashlib.sha256(reader.encode() + b"\0")
        for name in sorted(self.files):
            h.update(name.encode("utf-8", "surrogatepass") + b"\0" + hashlib.sha256(self.files[name]).digest())
        h.update(json.dumps(self.settings, sort_keys=True, default=repr).encode())
        return h.hexdigest()


# ----------------------------------------------------------------- building blocks
def _token(known: list[str], max_size: int = 8) -> st.SearchStrategy[str]:
    """A header/cell token: mostly the known troublemakers, else text, a float or an integer as text."""
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(known),
        st.text(max_size=max_size),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
    )


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, with bytes overwritten, or with bytes inserted (what a bad disk or copy does)."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "same"]))
    if kind == "same" or not data:
        return data
    pos = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:pos]
    chunk = draw(st.binary(min_size=1, max_size=8))
    if kind == "flip":
        return data[:pos] + chunk + data[pos + len(chunk) :]
    return data[:pos] + chunk + data[pos:]


def _mat_v4(val: np.ndarray, name: str = "val") -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {name: val}, format="4")
    return buf.getvalue()


def _mat_v5(obj: Any, name: str = "val") -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {name: obj}, format="5")
    return buf.getvalue()


def _ecg(n: int = RECORD_SAMPLES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 300
    beat = np.exp(-(((t * 1.17) % 1.0 - 0.5) ** 2) / 0.0005)
    return np.round(1000 * (beat + 0.05 * rng.standard_normal(n))).astype(np.int16)[None, :]


def hea_text(rid: str, n: int = RECORD_SAMPLES, fs: str = "300", gain: str = "1000/mV") -> str:
    return f"{rid} 1 {fs} {n} 05:05:15 1/05/2000\n{rid}.mat 16+24 {gain} 16 0 0 0 0 ECG\n"


def cinc_zip(records: dict[str, tuple[bytes, bytes]]) -> bytes:
    """``training2017.zip`` bytes: ``{rid: (hea bytes, mat bytes)}`` plus REFERENCE.csv and RECORDS."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rid, (hea, mat) in sorted(records.items()):
            zf.writestr(f"training2017/{rid}.hea", hea)
            zf.writestr(f"training2017/{rid}.mat", mat)
        labels = "".join(f"{r},{'NA'[i % 2]}\n" for i, r in enumerate(sorted(records)))
        zf.writestr("training2017/REFERENCE.csv", labels)
        zf.writestr("training2017/RECORDS", "".join(f"{r}\n" for r in sorted(records)))
    return buf.getvalue()


def _good_cinc_records() -> dict[str, tuple[bytes, bytes]]:
    return {rid: (hea_text(rid).encode(), _mat_v4(_ecg(seed=i))) for i, rid in enumerate(("A00001", "A00002"))}


# ----------------------------------------------------------------- WFDB header
_GAINS = ["1000/mV", "--", "e", ".", "+", "1e", "nan", "inf", "-inf", "0", "-200/mV", "1e400/mV", "1000(0)/mV"]
_GAINS += ["1000(x)/mV", "1000/", "/mV", "200(-5)", "1000(0)/", "0x10/mV", "1_000/mV", "NaN/mV", "1e-400/mV"]
_RATES = ["300", "inf", "nan", "-inf", "3e6", "1e-9", "0", "-300", "300/0", "300(1)/2", "abc", "1e400", "150"]
_RATES += ["360", "0.0001", "299.99", "3e-1", "300/", "/300", "1e5"]
_COUNTS = [str(RECORD_SAMPLES), "0", "-1", "abc", "599", "601", "1e9", "99999999999999999999", "6.0", "1_0"]
_SIGNALS = ["1", "0", "2", "-1", "x", "1.0", "999999"]
_FORMATS = ["16+24", "16", "212", "8", "x", "16+x", "+24"]


@st.composite
def wfdb_header(draw: st.DrawFn) -> Case:
    """A fuzzed ``A00003.hea`` (fields, field counts, extra lines, or any text) beside a good ``.mat``."""
    rid = FUZZ_RECORD
    if draw(st.integers(0, 9)) == 0:  # the whole header is arbitrary text or bytes
        raw = draw(st.one_of(st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary()))
    else:
        name = draw(st.one_of(st.just(rid), st.just(rid), st.sampled_from([f"{rid}/2", "A00004", ""]), st.text()))
        record = [name, draw(_token(_SIGNALS)), draw(_token(_RATES)), draw(_token(_COUNTS))]
        record = record[: draw(st.integers(1, 4))] + draw(st.lists(st.text(max_size=6), max_size=2))
        n_lines = draw(st.integers(0, 3))
        lines = [" ".join(record)]
        for _ in range(n_lines):
            fields = [
                draw(st.sampled_from([f"{rid}.mat", "other.mat", ""])),
                draw(_token(_FORMATS)),
                draw(_token(_GAINS)),
                draw(_token(["16", "0", "x"])),
                draw(_token(["0", "-1", "x", "1.5"])),
                draw(_token(["0", "-127", "x", "1e3"])),
                "0",
                "0",
                draw(st.sampled_from(["ECG", "ECG", "II", "", "ÉCG"])),
            ]
            lines.append(" ".join(fields[: draw(st.integers(1, 9))]))
        if draw(st.booleans()):
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["# comment", "", "   ", "\t"])))
        raw = ("\r\n" if draw(st.booleans()) else "\n").join(lines).encode("utf-8", "surrogatepass")
    records = _good_cinc_records() | {rid: (raw, _mat_v4(_ecg(seed=3)))}
    return Case({"training2017.zip": cinc_zip(records)}, names=(rid,))


# ----------------------------------------------------------------- .mat bytes
@st.composite
def _mat_payload(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["v4", "v5", "v5obj", "v73", "mutated", "random", "empty"]))
    if kind in ("v4", "v5"):
        dtype = draw(st.sampled_from(["int16", "float64", "int32", "uint8", "float32"]))
        shape = draw(st.sampled_from([(1, RECORD_SAMPLES), (1, 0), (2, RECORD_SAMPLES), (RECORD_SAMPLES, 1), (1, 5)]))
        fill = draw(st.sampled_from(["ecg", "zeros", "nan", "inf", "big"]))
        val = np.resize(_ecg(), shape).astype(np.float64) if fill == "ecg" else np.zeros(shape)
        if fill in ("nan", "inf") and val.size and dtype.startswith("float"):
            val.flat[draw(st.integers(0, val.size - 1))] = np.nan if fill == "nan" else np.inf
        if fill == "big":
            val = val + 1e6
        name = draw(st.sampled_from(["val", "val", "x", "VAL"]))
        with np.errstate(invalid="ignore", over="ignore"):
            arr = val.astype(dtype)
        return _mat_v4(arr, name) if kind == "v4" else _mat_v5(arr, name)
    if kind == "v5obj":  # char, complex, logical, struct, cell: not ADC samples
        obj = draw(
            st.sampled_from(
                ["text", "complex", "logical", "struct", "cell", "3d"],
            )
        )
        value = {
            "text": np.array(["abc"]),
            "complex": np.ones((1, 5)) + 1j,
            "logical": np.ones((1, 5), dtype=bool),
            "struct": {"a": np.ones(3)},
            "cell": np.array([np.ones(3), np.ones(2)], dtype=object),
            "3d": np.ones((1, 3, 4), dtype=np.int16),
        }[obj]
        return _mat_v5(value)
    if kind == "v73":  # MATLAB v7.3 is HDF5 behind a 128-byte text header with version 0x0200
        head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2024 HDF5 schema 1.00 ."
        return head.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM" + draw(st.binary(max_size=64))
    if kind == "mutated":
        return draw(_mutated(_mat_v4(_ecg())))
    if kind == "random":
        return draw(st.binary(max_size=256))
    return b""


@st.composite
def wfdb_mat(draw: st.DrawFn) -> Case:
    """A good ``A00003.hea`` beside fuzzed ``.mat`` bytes (v4/v5 of odd shapes and types, v7.3, corrupt)."""
    rid = FUZZ_RECORD
    records = _good_cinc_records() | {rid: (hea_text(rid).encode(), draw(_mat_payload()))}
    return Case({"training2017.zip": cinc_zip(records)}, names=(rid,))


@st.composite
def cinc_archive(draw: st.DrawFn) -> Case:
    """The whole ``training2017.zip`` damaged (cut short, bytes overwritten or inserted), or any bytes."""
    records = _good_cinc_records() | {FUZZ_RECORD: (hea_text(FUZZ_RECORD).encode(), _mat_v4(_ecg(seed=3)))}
    data = draw(st.one_of(_mutated(cinc_zip(records)), _mutated(cinc_zip(records)), st.binary(max_size=128)))
    return Case({"training2017.zip": data}, names=("training2017.zip",))


# ----------------------------------------------------------------- Bonn zips
_BONN_NAMES = ["Z001.txt", "Z002.TXT", "sub/Z003.txt", "O001.txt", "Z001.txt", ".hidden", "__MACOSX/Z001.txt"]
_BONN_NAMES += ["Z1.csv", "Z.txt", "ZZZ.txt", "Zé01.txt", "../Z004.txt", "Z005.txt/", "z006.txt", "Z007", "Z 8.txt"]


@st.composite
def _bonn_member(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.one_of(st.sampled_from(_BONN_NAMES), st.text(min_size=1, max_size=12).map(lambda t: f"Z{t}.txt")))
    good = [str(v) for v in np.arange(BONN_SAMPLES) * 7 - 50]
    kind = draw(st.sampled_from(["good", "good", "short", "long", "text", "nan", "inf", "empty", "binary", "blank"]))
    lines = {
        "good": good,
        "short": good[:-3],
        "long": good + ["1", "2"],
        "text": good[:5] + [draw(st.text(max_size=6))] + good[6:],
        "nan": good[:2] + ["nan"] + good[3:],
        "inf": good[:2] + ["-inf"] + good[3:],
        "empty": [],
        "blank": good[:4] + [""] + good[4:],
    }.get(kind)
    if lines is None:
        return name, draw(st.binary(max_size=64))
    sep = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    return name, (sep.join(lines) + sep).encode("latin-1", "replace")


@st.composite
def bonn_zip(draw: st.DrawFn) -> Case:
    """``Z.zip`` of 0-4 members with odd names, sizes and contents; sometimes the zip bytes themselves damaged."""
    members = draw(st.lists(_bonn_member(), max_size=4))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            try:
                zf.writestr(name, data)
            except (ValueError, UnicodeEncodeError):  # a name zipfile itself refuses to write
                continue
    data = buf.getvalue()
    if draw(st.integers(0, 4)) == 0:
        data = draw(_mutated(data))
    return Case({"Z.zip": data}, names=("Z.zip",))


# ----------------------------------------------------------------- custom formats
_CELLS = ["1.5", "-2", "0", "", "nan", "inf", "-inf", "abc", "1e999", " 3 ", "0x10", "1,5", "\x00"]
_N_CHANNELS = ["1", "2", "0", "-1", "1.5", "x", "", "3", "1e3"]
_FS_CELLS = ["100", "abc", "0", "-1", "inf", "nan", "", "1e-9", "3e6", "100.0"]
_SPLITS = ["train", "val", "test", "TRAIN", "", "x"]
_LABELS = ["a", "b", "", "0", "1", "a", "b", " ", "nan"]


def _custom_settings() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "fs": st.sampled_from([100.0, 100.0, 100.0, None, 0.001]),
            "target_fs": st.sampled_from([None, None, None, 50.0, 1e6]),
            "group_by": st.sampled_from(["record", "subject", "window"]),
            "split_from_file": st.booleans(),
            "class_names": st.sampled_from([None, None, ["a", "b"], ["x"]]),
        }
    )


def _good_values(n: int, seed: int) -> list[str]:
    return [f"{v:.3f}" for v in np.random.default_rng(seed).standard_normal(n)]


@st.composite
def custom_csv(draw: st.DrawFn) -> Case:
    """A CSV with a header: optional id columns with odd values, odd sample cells, ragged rows, bad bytes."""
    ids = draw(st.lists(st.sampled_from(["record_id", "subject_id", "split", "fs", "n_channels"]), unique=True))
    header = ["label", *ids, *[f"s{i}" for i in range(WINDOW)]]
    if draw(st.integers(0, 5)) == 0:
        header.remove("label")
    rows = []
    for r in range(draw(st.integers(0, 12))):
        cells = {
            "label": draw(st.sampled_from(_LABELS)) if draw(st.integers(0, 3)) == 0 else "ab"[r % 2],
            "record_id": f"r{r // 2}",
            "subject_id": f"s{r // 4}",
            "split": draw(st.sampled_from(_SPLITS)) if draw(st.booleans()) else ["train", "val", "test"][r % 3],
            "fs": draw(st.sampled_from(_FS_CELLS)) if draw(st.integers(0, 3)) == 0 else "100",
            "n_channels": draw(st.sampled_from(_N_CHANNELS)) if draw(st.integers(0, 3)) == 0 else "1",
        }
        samples = _good_values(WINDOW, r)
        if draw(st.integers(0, 3)) == 0:
            samples[draw(st.integers(0, WINDOW - 1))] = draw(_token(_CELLS, 4))
        line = [cells[h] for h in header if h in cells] + samples
        if draw(st.integers(0, 7)) == 0:  # ragged
            line = line[: draw(st.integers(0, len(line)))]
        rows.append(",".join(c.replace(",", ";") for c in line))
    text = "\n".join([",".join(header), *rows]) + "\n"
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 7)) == 0:
        data = draw(st.one_of(_mutated(data), st.binary(max_size=64)))
    return Case({"w.csv": data}, names=("w.csv",), settings=draw(_custom_settings()))


@st.composite
def custom_ucr(draw: st.DrawFn) -> Case:
    """UCR ``.tsv`` files (no header, label first): odd labels and cells, ragged lines, TRAIN/TEST names."""
    files: dict[str, bytes] = {}
    names = st.sampled_from(["X_TRAIN.tsv", "X_TEST.tsv", "X.tsv", "X_VAL.tsv"])
    for fname in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
        lines = []
        for r in range(draw(st.integers(0, 10))):
            label = draw(st.sampled_from(_LABELS)) if draw(st.integers(0, 3)) == 0 else "12"[r % 2]
            samples = _good_values(WINDOW, r)
            if draw(st.integers(0, 3)) == 0:
                samples[draw(st.integers(0, WINDOW - 1))] = draw(_token(_CELLS, 4))
            if draw(st.integers(0, 7)) == 0:
                samples = samples[: draw(st.integers(0, WINDOW))]
            lines.append("\t".join([label, *samples]))
        data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
        if draw(st.integers(0, 9)) == 0:
            data = draw(_mutated(data))
        files[fname] = data
    return Case(files, names=tuple(files), settings=draw(_custom_settings()))


_DTYPES = ["float32", "float64", "int16", "bool", "complex64", "<U3", "uint8"]


@st.composite
def _npz_array(draw: st.DrawFn, shape: tuple[int, ...], dtype: str | None = None) -> np.ndarray:
    dtype = dtype or draw(st.sampled_from(_DTYPES))
    values = np.random.default_rng(draw(st.integers(0, 3))).standard_normal(shape)
    if dtype == "<U3":
        return values.astype(str).astype("<U3")
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


@st.composite
def custom_npz(draw: st.DrawFn) -> Case:
    """An ``.npz``: x/y of odd shapes and dtypes, fs as scalar/array/text, id arrays of the wrong length."""
    n = draw(st.integers(0, 10))
    x_shape = draw(st.sampled_from([(n, WINDOW), (n, 2, WINDOW), (n,), (n, 0), (n, WINDOW, 1, 1), (n, 0, WINDOW)]))
    arrays: dict[str, np.ndarray] = {}
    if draw(st.integers(0, 9)):
        arrays["x"] = draw(_npz_array(x_shape, "float32" if draw(st.booleans()) else None))
        if draw(st.booleans()) and arrays["x"].dtype.kind == "f" and arrays["x"].size:
            arrays["x"].flat[draw(st.integers(0, arrays["x"].size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    if draw(st.integers(0, 9)):
        y_shape = draw(st.sampled_from([(n,), (n,), (n, 2), (max(n - 1, 0),), ()]))
        arrays["y"] = (np.arange(int(np.prod(y_shape))) % 2).reshape(y_shape)
        if draw(st.integers(0, 3)) == 0:
            arrays["y"] = draw(_npz_array(y_shape))
    extra = draw(st.lists(st.sampled_from(["fs", "record_id", "subject_id", "split", "channel_names"]), unique=True))
    for key in extra:
        if key == "fs":
            arrays[key] = draw(
                st.sampled_from(
                    [np.float64(100), np.array([100.0, 200.0]), np.array("abc"), np.float64(-1), np.float64(np.inf)]
                    + [np.array([100.0]), np.float64(np.nan), np.int64(100), np.array([], dtype=float)]
                )
            )
        elif key == "channel_names":
            arrays[key] = np.array(["Fz", "Cz", "Pz"][: draw(st.integers(0, 3))])
        elif key == "split":
            arrays[key] = np.array([draw(st.sampled_from(_SPLITS)) for _ in range(draw(st.sampled_from([n, n, 1])))])
        else:
            arrays[key] = np.array([f"r{i // 2}" for i in range(draw(st.sampled_from([n, n, max(n - 1, 0)])))])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    if draw(st.integers(0, 7)) == 0:
        data = draw(st.one_of(_mutated(data), st.binary(max_size=64)))
    return Case({"d.npz": data}, names=("d.npz",), settings=draw(_custom_settings()))


@st.composite
def custom_parquet(draw: st.DrawFn) -> Case:
    """A Parquet of label/signal (+ ids): signals of odd lengths, nulls, text and nesting; odd ids; damaged bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = draw(st.integers(0, 10))
    signal_kind = draw(st.sampled_from(["good", "good", "ragged", "nulls", "empty", "text", "nested", "scalar"]))
    good = [[float(v) for v in _good_values(WINDOW, i)] for i in range(n)]
    signal: list[Any] = {
        "good": good,
        "ragged": [s[: WINDOW - (i % 3)] for i, s in enumerate(good)],
        "nulls": [None if i % 3 == 0 else s for i, s in enumerate(good)],
        "empty": [[] for _ in good],
        "text": [[str(v) for v in s] for s in good],
        "nested": [[s[:6], s[6:]] for s in good],
        "scalar": [s[0] for s in good],
    }[signal_kind]
    cols: dict[str, Any] = {"signal": signal}
    if draw(st.integers(0, 7)):
        label_kind = draw(st.sampled_from(["int", "text", "null", "list", "float"]))
        cols["label"] = {
            "int": [i % 2 for i in range(n)],
            "text": ["ab"[i % 2] for i in range(n)],
            "null": [None if i % 2 else "a" for i in range(n)],
            "list": [[i] for i in range(n)],
            "float": [float("nan") if i == 0 else float(i % 2) for i in range(n)],
        }[label_kind]
    for key in draw(st.lists(st.sampled_from(["fs", "n_channels", "record_id", "split"]), unique=True)):
        cols[key] = {
            "fs": [draw(st.sampled_from([100.0, 0.0, -1.0, float("inf"), float("nan"), None])) for _ in range(n)],
            "n_channels": [draw(st.sampled_from([1, 2, 0, -1, 3, None])) for _ in range(n)],
            "record_id": [f"r{i // 2}" for i in range(n)],
            "split": [draw(st.sampled_from(_SPLITS)) for _ in range(n)],
        }[key]
    try:
        table = pa.table(cols)
    except (pa.ArrowException, TypeError, ValueError):  # arrow refuses the mix: store the signal as text
        table = pa.table({k: [json.dumps(v) for v in vals] for k, vals in cols.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    if draw(st.integers(0, 7)) == 0:
        data = draw(st.one_of(_mutated(data), st.binary(max_size=64)))
    return Case({"w.parquet": data}, names=("w.parquet",), settings=draw(_custom_settings()))


# ----------------------------------------------------------------- params.yaml values and CLI values
#: Values a person might type for any setting: wrong types, edge numbers, empty things.
ODD_VALUES: list[Any] = [None, True, False, 0, -1, 1, 2**63, -(2**63), 0.0, -0.0, 1e308, 1e-308, 0.5, 1.0, 2.5]
ODD_VALUES += [float("nan"), float("inf"), float("-inf"), "", "abc", "0", "1e3", [], [0], [1, 2], {}, {"a": 1}, "é"]


def odd_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(ODD_VALUES),
        st.integers(),
        st.floats(),
        st.text(max_size=8),
        st.lists(st.integers(-3, 3), max_size=3),
    )


def params_value(leaves: list[tuple[str, ...]]) -> st.SearchStrategy[Case]:
    """One setting of params.yaml (a path among ``leaves``, or a typo of one) set to an odd value."""

    @st.composite
    def draw_case(draw: st.DrawFn) -> Case:
        path = list(draw(st.sampled_from(leaves)))
        if draw(st.integers(0, 9)) == 0:
            path[-1] += draw(st.sampled_from(["x", "_", "s"]))  # a typo
        value = draw(odd_value())
        return Case({}, names=(".".join(path),), settings={"key": path, "value": value})

    return draw_case()


def yaml_text() -> st.SearchStrategy[Case]:
    """A whole params file of arbitrary (often invalid) YAML."""
    snippets = ["pretrain: [", "a: b: c", "- 1\n- 2", "{", "profile: small\nprofiles: 3", "\t- x"]
    snippets += ["!!python/object:os.system", "profile: small\nprofiles: {small: 3}", "profiles: {1: {}}"]
    text = st.one_of(st.sampled_from(snippets), st.text(max_size=80))
    return text.map(lambda t: Case({"params.yaml": t.encode("utf-8", "surrogatepass")}, names=("params.yaml",)))


_CLI_COMMANDS = ["set", "pretrain", "evaluate", "describe", "embed"]


@st.composite
def cli_call(draw: st.DrawFn, leaves: list[str]) -> Case:
    """Arguments of one ``trls`` command with odd option values (a root with no data: nothing may run)."""
    cmd = draw(st.sampled_from(_CLI_COMMANDS))
    text = st.one_of(st.sampled_from(["0", "-1", "abc", "", "1e3", "nan", "inf", "3", "--", "null", "[1]"]), st.text())
    if cmd == "set":
        item = draw(
            st.one_of(
                st.builds(lambda k, v: f"{k}={v}", st.sampled_from(leaves), text),
                st.sampled_from(["=", "a..b=1", "pretrain.epochs", "pretrain=1", ".x=1", "pretrain.epochs=[", "=3"]),
                st.text(max_size=20),
            )
        )
        return Case({}, names=("--set", item.partition("=")[0].strip()), settings={"args": ["params", "--set", item]})
    if cmd == "pretrain":
        opt = draw(st.sampled_from(["--epochs", "--seed"]))
        value = draw(text)
        return Case({}, names=(opt, "pretrain."), settings={"args": ["pretrain", opt, value], "root": True})
    if cmd == "evaluate":
        value = draw(text)
        args = ["evaluate", "--task", value]
        return Case({}, names=("--task", "evaluate.task"), settings={"args": args, "root": True})
    if cmd == "describe":
        ds = draw(st.one_of(st.sampled_from(["epilepsy", "cinc2017", "nope", ""]), st.text(max_size=6)))
        limit = draw(text)
        return Case({}, names=("--limit", "dataset"), settings={"args": ["data", "describe", ds, "--limit", limit]})
    value = draw(text)
    args = ["embed", "in.npz", "out.parquet", "--model", "models:/nope@x", "--fs", value]
    return Case({}, names=("--fs", "in.npz"), settings={"args": args, "root": True})
