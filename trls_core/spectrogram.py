"""Signal windows -> log-magnitude STFT images -> normalisation (docs/design.md §1.1).

Why this module exists: the whole TRLS method sees signals only through
their spectrograms, so the transform must be (a) fast on whole datasets
(one batched ``torch.stft`` per chunk of rows, never a Python loop over
windows), (b) exactly reproducible later on raw windows, so a registered
model can take raw signal: :class:`SpectrogramTransform` runs the very same
code path as the DVC stage, with the normaliser statistics as buffers.

Normalisation defaults to train-split statistics per (channel, frequency
bin): per-window standardisation is offered, but it throws away signal
power, a strong clinical cue (seizure EEG is far larger than background).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "NORM_MODES",
    "WINDOWS",
    "SpectrogramTransform",
    "apply_normaliser",
    "fit_normaliser",
    "spectrogram_shape",
    "stft_logmag",
]

NORM_MODES: tuple[str, ...] = ("train_per_freq", "train_global", "per_window", "none")
WINDOWS: tuple[str, ...] = ("hann", "hamming", "blackman", "bartlett", "rect")
PAD_MODES: tuple[str, ...] = ("reflect", "constant", "replicate", "circular")
DEFAULT_STD_FLOOR = 1e-6
CONFIG_KEYS: tuple[str, ...] = (  # what to_config writes and from_config accepts
    "n_fft",
    "hop",
    "win_length",
    "window",
    "center",
    "log_eps",
    "fmax_bin",
    "power",
    "pad_mode",
    "norm_mode",
    "std_floor",
)


# --------------------------------------------------------------------------- STFT


def _check_stft_params(
    n_fft: int, hop: int, win_length: int | None, window: str, fmax_bin: int | None, pad_mode: str
) -> int:
    """Validate STFT parameters; return the effective window length."""
    if not isinstance(n_fft, (int, np.integer)) or n_fft < 2:
        raise ValueError(f"stft: n_fft must be an int >= 2, got {n_fft!r}")
    if not isinstance(hop, (int, np.integer)) or hop < 1:
        raise ValueError(f"stft: hop must be an int >= 1, got {hop!r}")
    wl = int(n_fft if win_length is None else win_length)
    if not 1 <= wl <= n_fft:
        raise ValueError(f"stft: win_length must be in [1, n_fft={n_fft}], got {win_length!r}")
    if window not in WINDOWS:
        raise ValueError(f"stft: unknown window {window!r}; allowed: {', '.join(WINDOWS)}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"stft: unknown pad_mode {pad_mode!r}; allowed: {', '.join(PAD_MODES)}")
    n_bins = n_fft // 2 + 1
    if fmax_bin is not None and not 1 <= int(fmax_bin) <= n_bins:
        raise ValueError(f"stft: fmax_bin must be in [1, n_fft//2+1={n_bins}], got {fmax_bin!r}")
    return wl


def make_window(window: str, win_length: int, device: torch.device | None = None) -> torch.Tensor:
    """Periodic window (the STFT convention, same as ``scipy.signal.get_window``)."""
    if window == "hann":
        return torch.hann_window(win_length, periodic=True, device=device)
    if window == "hamming":
        return torch.hamming_window(win_length, periodic=True, device=device)
    if window == "blackman":
        return torch.blackman_window(win_length, periodic=True, device=device)
    if window == "bartlett":
        return torch.bartlett_window(win_length, periodic=True, device=device)
    if window == "rect":
        return torch.ones(win_length, device=device)
    raise ValueError(f"stft: unknown window {window!r}; allowed: {', '.join(WINDOWS)}")


def spectrogram_shape(
    L: int, n_fft: int, hop: int, center: bool = True, fmax_bin: int | None = None
) -> tuple[int, int]:
    """(F, T) that :func:`stft_logmag` produces for windows of ``L`` samples.

    ``center=True`` pads ``n_fft // 2`` samples on both sides (torch.stft).
    """
    _check_stft_params(n_fft, hop, None, "hann", fmax_bin, "reflect")
    padded = L + 2 * (n_fft // 2) if center else L
    if padded < n_fft:
        raise ValueError(f"stft: signal of {L} samples is shorter than n_fft={n_fft} (center={center})")
    n_freq = n_fft // 2 + 1 if fmax_bin is None else int(fmax_bin)
    return n_freq, 1 + (padded - n_fft) // hop


def _logmag_rows(
    rows: torch.Tensor,
    n_fft: int,
    hop: int,
    win_length: int,
    window_t: torch.Tensor,
    center: bool,
    pad_mode: str,
    log_eps: float,
    fmax_bin: int | None,
    power: bool,
) -> torch.Tensor:
    """One batched STFT of ``rows`` (R, L) -> (R, F, T) float32 log-magnitude (or log-power)."""
    z = torch.stft(
        rows,
        n_fft=n_fft,
        hop_length=hop,
        win_length=win_length,
        window=window_t,
        center=center,
        pad_mode=pad_mode,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    if fmax_bin is not None:
        z = z[:, :fmax_bin]
    if power:
        mag = z.real.square() + z.imag.square()
    else:
        mag = z.abs()
    return torch.log(mag + log_eps)


def stft_logmag(
    x: torch.Tensor | np.ndarray,
    n_fft: int,
    hop: int,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    log_eps: float = 1e-6,
    fmax_bin: int | None = None,
    chunk_size: int = 4096,
    power: bool = False,
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Log-magnitude STFT of a batch of windows: (N, C, L) -> (N, C, F, T) float32.

    Rows (N*C of them) go through ``torch.stft`` ``chunk_size`` at a time,
    one call per chunk, so memory stays bounded on long recordings while
    the work stays batched. ``log(|X| + log_eps)``, or ``log(|X|^2 + log_eps)``
    with ``power=True``. ``fmax_bin`` keeps only the first ``fmax_bin``
    frequency bins (e.g. drop bins above the band of interest). The result
    lives on ``x``'s device (numpy input -> CPU).
    """
    wl = _check_stft_params(n_fft, hop, win_length, window, fmax_bin, pad_mode)
    if chunk_size < 1:
        raise ValueError(f"stft: chunk_size must be >= 1, got {chunk_size!r}")
    xt = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(xt, torch.Tensor):
        raise ValueError(f"stft: x must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if xt.ndim != 3:
        raise ValueError(f"stft: x must have shape (N, C, L), got {tuple(xt.shape)}")
    if xt.is_complex():
        raise ValueError("stft: x must be real-valued")
    xt = xt.to(torch.float32)
    n, c, length = xt.shape
    n_freq, n_frames = spectrogram_shape(length, n_fft, hop, center, fmax_bin)
    if center and pad_mode == "reflect" and length <= n_fft // 2:
        raise ValueError(
            f"stft: reflect padding needs L > n_fft//2 ({n_fft // 2}), got L={length}; "
            "use pad_mode='constant' or a smaller n_fft"
        )
    rows = xt.reshape(n * c, length)
    window_t = make_window(window, wl, device=rows.device)
    out = torch.empty((n * c, n_freq, n_frames), dtype=torch.float32, device=rows.device)
    for start in range(0, n * c, chunk_size):
        stop = min(start + chunk_size, n * c)
        out[start:stop] = _logmag_rows(
            rows[start:stop], n_fft, hop, wl, window_t, center, pad_mode, log_eps, fmax_bin, power
        )
    return out.reshape(n, c, n_freq, n_frames)


# ------------------------------------------------------------------ normalisation


def _check_mode(mode: str) -> None:
    if mode not in NORM_MODES:
        raise ValueError(f"normaliser: unknown mode {mode!r}; allowed: {', '.join(NORM_MODES)}")


def _check_spec(spec: torch.Tensor, who: str) -> None:
    if not isinstance(spec, torch.Tensor) or spec.ndim != 4:
        shape = tuple(spec.shape) if isinstance(spec, torch.Tensor) else type(spec).__name__
        raise ValueError(f"{who}: spec must be a tensor of shape (N, C, F, T), got {shape}")


def fit_normaliser(
    spec: torch.Tensor,
    mode: str,
    std_floor: float = DEFAULT_STD_FLOOR,
    chunk_size: int = 4096,
) -> dict[str, torch.Tensor]:
    """Statistics of the TRAIN spectrograms (N, C, F, T) for :func:`apply_normaliser`.

    - ``train_per_freq``: mean/std per channel x frequency bin over N and T,
      shapes (C, F, 1); keeps between-window power differences (the default).
    - ``train_global``: one mean/std per channel, shapes (C, 1, 1).
    - ``per_window`` / ``none``: no statistics (empty dict).

    Sums are accumulated in float64 chunk by chunk (no float64 copy of the
    whole array). ``std`` is floored at ``std_floor`` so constant bins do
    not divide by zero. The dict holds plain contiguous float32 tensors,
    ready for ``safetensors.torch.save_file``.
    """
    _check_mode(mode)
    _check_spec(spec, "fit_normaliser")
    if mode in ("per_window", "none"):
        return {}
    n, c, f, t = spec.shape
    if n == 0:
        raise ValueError("fit_normaliser: spec has no windows (N=0)")
    dims = (0, 3) if mode == "train_per_freq" else (0, 2, 3)
    s1 = torch.zeros(0, dtype=torch.float64, device=spec.device)
    s2 = s1
    for start in range(0, n, chunk_size):
        block = spec[start : start + chunk_size].to(torch.float64)
        b1 = block.sum(dim=dims)
        b2 = block.square().sum(dim=dims)
        s1 = b1 if s1.numel() == 0 else s1 + b1
        s2 = b2 if s2.numel() == 0 else s2 + b2
    count = n * t if mode == "train_per_freq" else n * f * t
    mean = s1 / count
    var = (s2 / count - mean.square()).clamp_min(0.0)
    std = var.sqrt().clamp_min(std_floor)
    shape = (c, f, 1) if mode == "train_per_freq" else (c, 1, 1)
    return {
        "mean": mean.reshape(shape).to(torch.float32).contiguous(),
        "std": std.reshape(shape).to(torch.float32).contiguous(),
    }


def apply_normaliser(
    spec: torch.Tensor,
    mode: str,
    stats: dict[str, torch.Tensor] | None = None,
    std_floor: float = DEFAULT_STD_FLOOR,
) -> torch.Tensor:
    """Normalise spectrograms (N, C, F, T) with ``mode`` and (for train_* modes) ``stats``.

    ``per_window`` standardises each window per channel over (F, T) at
    apply time: no statistics, but absolute power is lost.
    """
    _check_mode(mode)
    _check_spec(spec, "apply_normaliser")
    if mode == "none":
        return spec
    if mode == "per_window":
        std, mean = torch.std_mean(spec, dim=(2, 3), keepdim=True, correction=0)
        return (spec - mean) / std.clamp_min(std_floor)
    stats = stats or {}
    for key in ("mean", "std"):
        if key not in stats:
            raise ValueError(f"apply_normaliser: mode {mode!r} needs stats[{key!r}] (from fit_normaliser)")
    mean, std = stats["mean"], stats["std"]
    c, f = spec.shape[1], spec.shape[2]
    want = (c, f, 1) if mode == "train_per_freq" else (c, 1, 1)
    for key, val in (("mean", mean), ("std", std)):
        if tuple(val.shape) != want:
            raise ValueError(
                f"apply_normaliser: stats[{key!r}] has shape {tuple(val.shape)}, expected {want} "
                f"for mode {mode!r} and spec of shape {tuple(spec.shape)}"
            )
    mean = mean.to(device=spec.device, dtype=spec.dtype)
    std = std.to(device=spec.device, dtype=spec.dtype).clamp_min(std_floor)
    return (spec - mean) / std


# ----------------------------------------------------------------- nn.Module form


class SpectrogramTransform(torch.nn.Module):
    """Raw windows (B, C, L) -> normalised spectrograms (B, C, F, T), as in the stage.

    Holds the STFT parameters and the normaliser statistics (as persistent
    buffers ``norm_mean``/``norm_std`` for train_* modes) so that an encoder
    wrapped as ``nn.Sequential(transform, encoder)`` takes raw signal. The
    forward is a single ``torch.stft`` call with no data-dependent Python
    control flow, so it traces/exports with a dynamic batch dimension.
    """

    def __init__(
        self,
        n_fft: int,
        hop: int,
        win_length: int | None = None,
        window: str = "hann",
        center: bool = True,
        log_eps: float = 1e-6,
        fmax_bin: int | None = None,
        power: bool = False,
        pad_mode: str = "reflect",
        norm_mode: str = "train_per_freq",
        stats: dict[str, torch.Tensor] | None = None,
        std_floor: float = DEFAULT_STD_FLOOR,
    ) -> None:
        super().__init__()
        self.win_length = _check_stft_params(n_fft, hop, win_length, window, fmax_bin, pad_mode)
        _check_mode(norm_mode)
        self.n_fft, self.hop, self.window_name = int(n_fft), int(hop), window
        self.center, self.log_eps, self.power, self.pad_mode = bool(center), float(log_eps), bool(power), pad_mode
        self.fmax_bin = None if fmax_bin is None else int(fmax_bin)
        self.norm_mode, self.std_floor = norm_mode, float(std_floor)
        self.register_buffer("window", make_window(window, self.win_length), persistent=False)
        if norm_mode in ("train_per_freq", "train_global"):
            stats = stats or {}
            for key in ("mean", "std"):
                if key not in stats:
                    raise ValueError(f"SpectrogramTransform: norm_mode {norm_mode!r} needs stats[{key!r}]")
            self.register_buffer("norm_mean", stats["mean"].detach().to(torch.float32).clone())
            self.register_buffer("norm_std", stats["std"].detach().to(torch.float32).clone())
        else:
            self.norm_mean = None
            self.norm_std = None

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if raw.ndim != 3:
            raise ValueError(f"SpectrogramTransform: expected (B, C, L), got {tuple(raw.shape)}")
        b, c, length = raw.shape
        spec = _logmag_rows(
            raw.to(torch.float32).reshape(b * c, length),
            self.n_fft,
            self.hop,
            self.win_length,
            self.window,
            self.center,
            self.pad_mode,
            self.log_eps,
            self.fmax_bin,
            self.power,
        )
        spec = spec.reshape(b, c, spec.shape[-2], spec.shape[-1])
        stats = None
        if self.norm_mean is not None:
            stats = {"mean": self.norm_mean, "std": self.norm_std}
        return apply_normaliser(spec, self.norm_mode, stats, self.std_floor)

    def normaliser_stats(self) -> dict[str, torch.Tensor]:
        """The statistics as plain CPU tensors (for safetensors)."""
        if self.norm_mean is None:
            return {}
        return {"mean": self.norm_mean.detach().cpu().contiguous(), "std": self.norm_std.detach().cpu().contiguous()}

    def to_config(self) -> dict[str, Any]:
        """JSON-serialisable parameters; with :meth:`normaliser_stats` rebuilds this module."""
        return {
            "n_fft": self.n_fft,
            "hop": self.hop,
            "win_length": self.win_length,
            "window": self.window_name,
            "center": self.center,
            "log_eps": self.log_eps,
            "fmax_bin": self.fmax_bin,
            "power": self.power,
            "pad_mode": self.pad_mode,
            "norm_mode": self.norm_mode,
            "std_floor": self.std_floor,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], stats: dict[str, torch.Tensor] | None = None) -> SpectrogramTransform:
        """Inverse of :meth:`to_config`; unknown keys are an error (a typo must not pass silently)."""
        allowed = set(CONFIG_KEYS)
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ValueError(f"SpectrogramTransform.from_config: unknown keys {unknown}; allowed: {sorted(allowed)}")
        return cls(**config, stats=stats)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.to_config().items())
