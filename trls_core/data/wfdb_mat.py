"""WFDB header + MATLAB v4 ``.mat`` records (the PhysioNet challenge layout).

PhysioNet challenges (CinC 2017 and later) ship each record as a WFDB header
``<id>.hea`` and a MATLAB v4 ``<id>.mat`` holding ``val`` (int16, channels ×
samples, the header's format ``16+24`` = 16-bit samples after a 24-byte MAT
header). The header is small text, so it is parsed here (no temp files,
members are read straight from the zip); the ``.mat`` goes through
``scipy.io.loadmat`` on bytes. Every function works on bytes/arrays so the
same code serves the zip, a folder and the tests, and every failure is a
:class:`DataError` whose message is the rejection reason recorded per record.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from trls_core.errors import DataError

#: WFDB: an ADC gain of 0 means "uncalibrated"; the library then uses 200 adu/unit.
DEFAULT_GAIN = 200.0
#: Resampling factors beyond this (either way) are a wrong header, not a signal: a polyphase filter
#: of 1e6 taps, or an output of 1e12 samples, would exhaust memory before it failed.
MAX_RESAMPLE_FACTOR = 1000
_GAIN_RE = re.compile(r"^(?P<gain>[-+0-9.eE]+)(?:\((?P<baseline>-?\d+)\))?(?:/(?P<units>\S+))?$")


@dataclass(frozen=True)
class SignalSpec:
    """One signal line of a WFDB header (fields this project uses)."""

    file_name: str
    fmt: str
    gain: float
    baseline: int
    units: str
    adc_zero: int
    init_value: int | None
    description: str


@dataclass(frozen=True)
class WfdbHeader:
    """The record line and signal lines of a single-segment WFDB header."""

    record_name: str
    fs: float
    n_samples: int | None
    signals: tuple[SignalSpec, ...]

    @property
    def channel_names(self) -> list[str]:
        return [s.description for s in self.signals]


def _int(value: str, what: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{where}: header field {what} is not an integer: {value!r}") from None


def _parse_signal_line(line: str, where: str) -> SignalSpec:
    parts = line.split(maxsplit=8)
    if len(parts) < 2:
        raise DataError(f"{where}: signal line needs at least file name and format: {line!r}")
    file_name, fmt = parts[0], parts[1]
    gain, baseline, units = DEFAULT_GAIN, None, "mV"
    if len(parts) > 2:
        m = _GAIN_RE.match(parts[2])
        try:  # the pattern admits '--', 'e', '.': float() decides
            gain = float(m["gain"]) if m is not None else math.nan
        except ValueError:
            gain = math.nan
        if m is None or not math.isfinite(gain):
            raise DataError(f"{where}: header field gain is malformed: {parts[2]!r} (expected e.g. 1000/mV)")
        gain = gain or DEFAULT_GAIN
        baseline = int(m["baseline"]) if m["baseline"] is not None else None
        units = m["units"] or units
    adc_zero = _int(parts[4], "adc_zero", where) if len(parts) > 4 else 0
    init_value = _int(parts[5], "initial_value", where) if len(parts) > 5 else None
    description = parts[8].strip() if len(parts) > 8 else ""
    return SignalSpec(
        file_name=file_name,
        fmt=fmt,
        gain=gain,
        baseline=adc_zero if baseline is None else baseline,  # WFDB: baseline defaults to adc_zero
        units=units,
        adc_zero=adc_zero,
        init_value=init_value,
        description=description,
    )


def parse_header(text: str, where: str) -> WfdbHeader:
    """Parse a single-segment WFDB header; ``where`` names the file in errors."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise DataError(f"{where}: empty header")
    rec = lines[0].split()
    if len(rec) < 2:
        raise DataError(f"{where}: record line needs a name and a signal count: {lines[0]!r}")
    if "/" in rec[0]:
        raise DataError(f"{where}: multi-segment records are not supported ({rec[0]!r})")
    n_sig = _int(rec[1], "n_signals", where)
    fs = 250.0  # WFDB's default when the header gives none
    if len(rec) > 2:
        try:
            fs = float(rec[2].split("/")[0].split("(")[0])
        except ValueError:
            raise DataError(f"{where}: header field fs is not a number: {rec[2]!r}") from None
    if not (math.isfinite(fs) and fs > 0):
        raise DataError(f"{where}: header field fs must be a positive finite number, got {rec[2]!r}")
    n_samples = _int(rec[3], "n_samples", where) if len(rec) > 3 else None
    sig_lines = lines[1 : 1 + n_sig]
    if len(sig_lines) != n_sig:
        raise DataError(f"{where}: header declares {n_sig} signal(s) but has {len(sig_lines)} signal line(s)")
    signals = tuple(_parse_signal_line(ln, where) for ln in sig_lines)
    return WfdbHeader(record_name=rec[0], fs=fs, n_samples=n_samples, signals=signals)


def read_mat_val(data: bytes, where: str) -> np.ndarray:
    """The ``val`` matrix (channels × samples) of a MATLAB v4/v5 file given as bytes."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(io.BytesIO(data))
    except NotImplementedError as exc:  # scipy reads v4-v7.2; v7.3 is HDF5
        raise DataError(f"{where}: unsupported .mat version ({exc}); save it as MATLAB v4 or v5 (-v7)") from None
    except (MatReadError, ValueError, TypeError, OSError, EOFError, IndexError, KeyError, OverflowError) as exc:
        raise DataError(f"{where}: unreadable .mat ({type(exc).__name__}: {exc}); truncated or corrupt?") from None
    except MemoryError:  # a corrupt size field asks for terabytes
        raise DataError(f"{where}: unreadable .mat (a size field asks for more memory than exists); corrupt?") from None
    if "val" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{where}: .mat has no variable 'val' (variables: {keys})")
    val = np.asarray(mat["val"])
    if val.ndim != 2 or val.size == 0:
        raise DataError(f"{where}: 'val' must be a non-empty 2-D matrix, got shape {val.shape}")
    if val.dtype.kind not in "iuf":  # char, struct, cell, complex, logical: not ADC samples
        raise DataError(f"{where}: 'val' must hold real numbers, got dtype {val.dtype}")
    return val


def check_against_header(val: np.ndarray, header: WfdbHeader, where: str) -> None:
    """Fail when the ``.mat`` disagrees with the header on channels or length.

    The header's ``initial_value`` is NOT checked: in the CinC 2017 release
    about 6 % of the records' headers disagree with their first ``.mat``
    sample although the signals are fine (the ``checksum`` field is 0
    throughout), so that check would reject good data.
    """
    if val.shape[0] != len(header.signals):
        raise DataError(
            f"{where}: header declares {len(header.signals)} signal(s), .mat 'val' has {val.shape[0]} row(s)"
        )
    if header.n_samples is not None and val.shape[1] != header.n_samples:
        raise DataError(f"{where}: header n_samples {header.n_samples} != .mat length {val.shape[1]}")


def to_physical(val: np.ndarray, header: WfdbHeader) -> np.ndarray:
    """Digital ADC units -> physical units: ``(val - baseline) / gain``, float32."""
    gain = np.array([s.gain for s in header.signals], dtype=np.float64)[:, None]
    base = np.array([s.baseline for s in header.signals], dtype=np.float64)[:, None]
    return ((val.astype(np.float64) - base) / gain).astype(np.float32)


def select_channels(signal: np.ndarray, header: WfdbHeader, names: list[str] | None, where: str) -> np.ndarray:
    """Rows of ``signal`` for the channel ``names`` (in that order); all rows when None."""
    if names is None:
        return signal
    have = header.channel_names
    missing = [n for n in names if n not in have]
    if missing:
        raise DataError(f"{where}: channel(s) {missing} not in the record (channels: {have})")
    return signal[[have.index(n) for n in names]]


def resample(signal: np.ndarray, fs: float, target_fs: float, where: str = "signal") -> np.ndarray:
    """Resample (..., L) from ``fs`` to ``target_fs`` with a polyphase filter; no-op if equal.

    The rational factor is approximated with a denominator ≤ 1000 (e.g.
    360 -> 300 Hz is 5/6 exactly; 173.61 -> 100 Hz is close to 576/1000).
    A rate that is not a positive finite number, or a factor beyond
    :data:`MAX_RESAMPLE_FACTOR` either way, is a :class:`DataError` naming
    ``where`` (a header's 3e6 Hz would otherwise fail deep in scipy, and
    1e-4 Hz would try to allocate 100 GB).
    """
    for what, rate in (("sampling rate", fs), ("target rate", target_fs)):
        if not (isinstance(rate, (int, float, np.floating, np.integer)) and math.isfinite(rate) and rate > 0):
            raise DataError(f"{where}: {what} must be a positive finite number, got {rate!r}")
    if abs(fs - target_fs) < 1e-9:
        return signal
    factor = target_fs / fs
    if not 1 / MAX_RESAMPLE_FACTOR <= factor <= MAX_RESAMPLE_FACTOR:
        raise DataError(
            f"{where}: resampling {fs:g} Hz -> {target_fs:g} Hz is a factor of {factor:.3g} "
            f"(beyond 1/{MAX_RESAMPLE_FACTOR}..{MAX_RESAMPLE_FACTOR}); is the sampling rate right?"
        )
    from scipy.signal import resample_poly

    ratio = Fraction(factor).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def check_signal(signal: np.ndarray, flat_std: float, where: str) -> None:
    """Reject NaN/inf samples and flat lines (every channel's std ≤ ``flat_std``)."""
    bad = ~np.isfinite(signal)
    if bad.any():
        ch, idx = np.argwhere(bad)[0]
        raise DataError(f"{where}: {int(bad.sum())} non-finite sample(s) (NaN/inf), first at channel {ch} sample {idx}")
    std = signal.std(axis=-1)
    if np.all(std <= flat_std):
        raise DataError(f"{where}: flat line (std {float(std.max()):.3g} <= flat_std {flat_std:g})")


def cut_windows(
    signal: np.ndarray, window: int, stride: int | None, pad: str, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut (C, L) into (K, C, window); returns ``(windows, start, n_pad)``.

    ``pad="drop"``: the trailing remainder is dropped and a record shorter
    than one window is an error. ``pad="zero"``: the remainder (and a short
    record) is zero-padded into one last window; ``n_pad`` says how many
    samples of each window are padding. ``pad="end"``: the remainder gets
    one last window that *ends at the record's end* (overlapping the one
    before it), so every sample is covered by real signal; only a record
    shorter than one window is zero-padded. Why: a record-level score pools
    all of a record's windows, and a last window of 1 s of signal and 9 s
    of zeros would pull the pooled feature towards "flat line".
    """
    if pad not in ("drop", "zero", "end"):
        raise DataError(f"{where}: pad must be 'drop', 'zero' or 'end', got {pad!r}")
    stride = window if stride is None else stride
    c, length = signal.shape
    if length < window and pad == "drop":
        raise DataError(f"{where}: shorter than one window ({length} samples < window {window})")
    k_full = 0 if length < window else 1 + (length - window) // stride
    starts = list(range(0, k_full * stride, stride))
    covered = starts[-1] + window if starts else 0
    if pad == "zero" and covered < length:
        starts.append(k_full * stride)
    elif pad == "end" and covered < length:
        starts.append(max(length - window, 0))
    need = starts[-1] + window
    x = signal if need <= length else np.concatenate([signal, np.zeros((c, need - length), signal.dtype)], axis=1)
    start = np.asarray(starts, dtype=np.int64)
    windows = np.stack([x[:, s : s + window] for s in starts]).astype(np.float32, copy=False)
    n_pad = np.maximum(start + window - length, 0).astype(np.int32)
    return windows, start, n_pad
