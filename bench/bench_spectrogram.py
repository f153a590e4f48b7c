"""Throughput of the batched torch spectrogram vs scipy.signal.stft.

Why: the spectrogram stage runs over whole datasets; this checks that the
batched ``torch.stft`` path (``trls_core.spectrogram.stft_logmag``) is
right (agrees with scipy to ~1e-4 in log-magnitude) and how fast it is,
on the Epilepsy shape (11,500 windows x 1 channel x 178 samples) and on a
longer shape (1,024 x 3,000 samples).

Same transform on both sides: periodic Hann window, zero padding of
n_fft//2 on both ends (torch ``center=True, pad_mode='constant'`` ==
scipy ``boundary='zeros', padded=False``), one-sided, log(|X| + eps).
scipy scales the STFT by 1/sum(window) (``scaling='spectrum'``); the
benchmark multiplies that back so both give the raw |X|.

Usage: python bench/bench_spectrogram.py [--out PATH] [--quick] [--device cpu|cuda]
Writes JSON atomically (default bench/results/spectrogram.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.signal
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trls_core.io import write_json  # noqa: E402
from trls_core.spectrogram import stft_logmag  # noqa: E402

LOG_EPS = 1e-6

# name, N, C, L, n_fft, hop
SHAPES_FULL = [
    ("epilepsy_nfft64_hop8", 11_500, 1, 178, 64, 8),
    ("epilepsy_nfft32_hop4", 11_500, 1, 178, 32, 4),
    ("long_nfft256_hop64", 1_024, 1, 3_000, 256, 64),
]
SHAPES_QUICK = [
    ("epilepsy_nfft64_hop8", 2_000, 1, 178, 64, 8),
    ("long_nfft256_hop64", 256, 1, 3_000, 256, 64),
]


def scipy_logmag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """scipy.signal.stft doing the same transform as stft_logmag(center=True, pad_mode='constant')."""
    win = scipy.signal.get_window("hann", n_fft)  # periodic, like torch.hann_window
    _, _, z = scipy.signal.stft(
        x,
        window=win,
        nperseg=n_fft,
        noverlap=n_fft - hop,
        nfft=n_fft,
        detrend=False,
        return_onesided=True,
        boundary="zeros",
        padded=False,
        axis=-1,
        scaling="spectrum",
    )
    return np.log(np.abs(z) * win.sum() + LOG_EPS).astype(np.float32)


def time_it(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] | None = None) -> tuple[list[float], Any]:
    """Run ``fn`` once to warm up, then ``repeats`` timed runs; return the times and the last result."""
    out = fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return times, out


def _summary(times: list[float], n_windows: int) -> dict[str, Any]:
    med = statistics.median(times)
    return {"median_s": med, "windows_per_s": n_windows / med, "times_s": times}


def bench_shape(
    name: str, n: int, c: int, length: int, n_fft: int, hop: int, repeats: int, device: str
) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((n, c, length), dtype=np.float32)
    x_t = torch.from_numpy(x_np)
    kwargs = dict(n_fft=n_fft, hop=hop, window="hann", center=True, pad_mode="constant", log_eps=LOG_EPS)
    n_windows = n * c
    res: dict[str, Any] = {"shape": [n, c, length], "n_fft": n_fft, "hop": hop}

    t_scipy, ref = time_it(lambda: scipy_logmag(x_np, n_fft, hop), repeats)
    res["scipy"] = _summary(t_scipy, n_windows)

    t_torch, out = time_it(lambda: stft_logmag(x_t, **kwargs), repeats)
    res["torch"] = _summary(t_torch, n_windows)
    res["torch"]["threads"] = torch.get_num_threads()

    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
        try:
            t1, _ = time_it(lambda: stft_logmag(x_t, **kwargs), repeats)
        finally:
            torch.set_num_threads(threads)
        res["torch_1thread"] = _summary(t1, n_windows)
        res["ratio_torch_1thread_over_scipy"] = res["torch_1thread"]["median_s"] / res["scipy"]["median_s"]

    if device == "cuda" and torch.cuda.is_available():
        x_gpu = x_t.cuda()
        t_gpu, out_gpu = time_it(lambda: stft_logmag(x_gpu, **kwargs), repeats, sync=torch.cuda.synchronize)
        res["torch_cuda"] = _summary(t_gpu, n_windows)
        res["torch_cuda"]["note"] = "input already on the GPU; excludes host->device copy"
        res["max_abs_diff_cuda_vs_cpu"] = float((out_gpu.cpu() - out).abs().max())

    res["ratio_torch_over_scipy"] = res["torch"]["median_s"] / res["scipy"]["median_s"]
    out_np = out.numpy()
    if out_np.shape != ref.shape:
        raise RuntimeError(f"{name}: torch shape {out_np.shape} != scipy shape {ref.shape}")
    # Both sides compute in float32 (scipy returns complex64 for float32 input):
    # |X| agrees to ~1e-7 of its maximum, so log|X| agrees to ~1e-5 except in
    # the few bins whose magnitude is tiny, where any float32 rounding is
    # amplified by the log. Agreement is judged on bins with |X| > 0.1.
    diff = np.abs(out_np - ref)
    well = ref > np.log(0.1)
    mag_t, mag_s = np.exp(out_np), np.exp(ref)
    res["max_abs_diff_logmag"] = float(diff.max())
    res["max_abs_diff_logmag_mag_gt_0.1"] = float(diff[well].max())
    res["fraction_bins_mag_gt_0.1"] = float(well.mean())
    res["max_rel_mag_err"] = float(np.abs(mag_t - mag_s).max() / mag_s.max())
    res["agree_1e-4"] = bool(res["max_abs_diff_logmag_mag_gt_0.1"] < 1e-4 and res["max_rel_mag_err"] < 1e-4)
    return res


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "spectrogram.json"))
    ap.add_argument("--quick", action="store_true", help="smaller shapes, 2 repeats (smoke run)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 5, quick 2)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="also time torch on CUDA")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    shapes = SHAPES_QUICK if args.quick else SHAPES_FULL
    results: dict[str, Any] = {
        "benchmark": "spectrogram",
        "quick": args.quick,
        "repeats": repeats,
        "log_eps": LOG_EPS,
        "transform": "hann (periodic), zero pad n_fft//2 both ends, onesided, log(|X|+eps), float32 input",
        "machine": machine_info(),
        "cases": {},
    }
    for name, n, c, length, n_fft, hop in shapes:
        r = bench_shape(name, n, c, length, n_fft, hop, repeats, args.device)
        results["cases"][name] = r
        line = (
            f"{name:24s} scipy {r['scipy']['median_s']:.4f}s ({r['scipy']['windows_per_s']:,.0f} w/s)  "
            f"torch[{r['torch']['threads']}t] {r['torch']['median_s']:.4f}s ({r['torch']['windows_per_s']:,.0f} w/s)  "
            f"torch/scipy {r['ratio_torch_over_scipy']:.3f}"
        )
        if "torch_1thread" in r:
            line += f"  torch[1t]/scipy {r['ratio_torch_1thread_over_scipy']:.3f}"
        if "torch_cuda" in r:
            line += f"  cuda {r['torch_cuda']['median_s']:.5f}s"
        line += (
            f"  logdiff(|X|>0.1) {r['max_abs_diff_logmag_mag_gt_0.1']:.1e}"
            f" relmag {r['max_rel_mag_err']:.1e} agree={r['agree_1e-4']}"
        )
        print(line, flush=True)
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
