"""Tests for trls_core.spectrogram: STFT shape/values, normalisers, the nn.Module form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trls_core.spectrogram import (
    NORM_MODES,
    SpectrogramTransform,
    apply_normaliser,
    fit_normaliser,
    spectrogram_shape,
    stft_logmag,
)


@pytest.mark.parametrize(
    "L,n_fft,hop,center,fmax_bin",
    [(178, 64, 8, True, None), (178, 32, 4, True, 10), (178, 64, 8, False, None), (100, 16, 5, False, 5)],
)
def test_shape_formula_matches_output(L, n_fft, hop, center, fmax_bin):
    x = torch.randn(3, 2, L)
    out = stft_logmag(x, n_fft, hop, center=center, fmax_bin=fmax_bin)
    f, t = spectrogram_shape(L, n_fft, hop, center, fmax_bin)
    assert out.shape == (3, 2, f, t)
    assert out.dtype == torch.float32
    if center:
        assert t == 1 + L // hop
    else:
        assert t == 1 + (L - n_fft) // hop
    assert f == (fmax_bin if fmax_bin else n_fft // 2 + 1)


def test_pure_sine_peaks_at_right_bin_and_matches_fft():
    n_fft, k = 64, 5  # sine exactly on bin 5
    L = 256
    n = np.arange(L)
    sig = (2.0 * np.sin(2 * np.pi * k * n / n_fft)).astype(np.float32)
    out = stft_logmag(sig[None, None], n_fft, hop=16, center=False, window="rect", log_eps=1e-9)
    mag = torch.exp(out[0, 0])  # (F, T)
    assert torch.all(mag.argmax(dim=0) == k)
    # hand computed |FFT| of the first frame
    ref = np.abs(np.fft.rfft(sig[:n_fft]))
    np.testing.assert_allclose(mag[:, 0].numpy(), ref, rtol=1e-4, atol=1e-4)
    assert mag[k, 0].item() == pytest.approx(2.0 * n_fft / 2, rel=1e-4)


def test_numpy_input_and_power_and_hann_window():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 128))
    mag = stft_logmag(x, 32, 8, center=False, log_eps=0.0)
    pw = stft_logmag(x, 32, 8, center=False, log_eps=0.0, power=True)
    torch.testing.assert_close(pw, 2 * mag, rtol=1e-4, atol=1e-4)
    w = np.hanning(33)[:32]  # periodic hann
    ref = np.log(np.abs(np.fft.rfft(x[1, 0, 8:40] * w)))
    np.testing.assert_allclose(mag[1, 0, :, 1].numpy(), ref, rtol=1e-4, atol=1e-4)


def test_batched_equals_per_row_and_chunking():
    x = torch.randn(7, 3, 178)
    full = stft_logmag(x, 32, 4, chunk_size=4)  # 21 rows in chunks of 4
    for i in range(7):
        for c in range(3):
            row = stft_logmag(x[i : i + 1, c : c + 1], 32, 4)
            torch.testing.assert_close(full[i, c], row[0, 0], rtol=1e-5, atol=1e-5)


def test_bad_params_raise():
    x = torch.randn(2, 1, 50)
    with pytest.raises(ValueError, match="window"):
        stft_logmag(x, 16, 4, window="tukey")
    with pytest.raises(ValueError, match="fmax_bin"):
        stft_logmag(x, 16, 4, fmax_bin=20)
    with pytest.raises(ValueError, match="shape"):
        stft_logmag(torch.randn(2, 50), 16, 4)
    with pytest.raises(ValueError, match="shorter"):
        spectrogram_shape(10, 16, 4, center=False)


def _two_amplitude_spec():
    """Half the windows have 10x the amplitude (seizure-like power jump)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, 178, generator=g)
    x[20:] *= 10.0
    return stft_logmag(x, 32, 8)


def test_per_freq_normaliser_zero_mean_unit_std_on_train():
    spec = _two_amplitude_spec()
    stats = fit_normaliser(spec, "train_per_freq", chunk_size=7)  # chunked accumulation
    assert stats["mean"].shape == (2, 17, 1) and stats["std"].shape == (2, 17, 1)
    z = apply_normaliser(spec, "train_per_freq", stats)
    torch.testing.assert_close(z.mean(dim=(0, 3)), torch.zeros(2, 17), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 3), correction=0), torch.ones(2, 17), atol=1e-4, rtol=0)


def test_global_normaliser_per_channel_scalar():
    spec = _two_amplitude_spec()
    spec[:, 1] += 5.0
    stats = fit_normaliser(spec, "train_global")
    assert stats["mean"].shape == (2, 1, 1)
    z = apply_normaliser(spec, "train_global", stats)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), correction=0), torch.ones(2), atol=1e-4, rtol=0)


def test_per_window_loses_power_while_train_per_freq_keeps_it():
    spec = _two_amplitude_spec()
    # train_per_freq: the 10x windows sit log(10) ≈ 2.3 higher, i.e. clearly above
    z = apply_normaliser(spec, "train_per_freq", fit_normaliser(spec, "train_per_freq"))
    gap = z[20:].mean() - z[:20].mean()
    assert gap > 1.0
    # per_window: each window standardised -> the groups are indistinguishable by level
    w = apply_normaliser(spec, "per_window")
    assert fit_normaliser(spec, "per_window") == {}
    torch.testing.assert_close(w.mean(dim=(2, 3)), torch.zeros(40, 2), atol=1e-4, rtol=0)
    assert abs(w[20:].mean() - w[:20].mean()) < 1e-4
    torch.testing.assert_close(w[20:], apply_normaliser(spec[20:] - np.log(10.0), "per_window"), atol=1e-4, rtol=0)


def test_std_floor_constant_bins_are_finite():
    spec = torch.full((4, 1, 5, 6), 3.0)
    stats = fit_normaliser(spec, "train_per_freq")
    z = apply_normaliser(spec, "train_per_freq", stats)
    assert torch.isfinite(z).all() and torch.all(z == 0)
    assert torch.isfinite(apply_normaliser(spec, "per_window")).all()


def test_normaliser_errors():
    spec = torch.randn(3, 1, 5, 6)
    with pytest.raises(ValueError, match="allowed: " + ", ".join(NORM_MODES)):
        fit_normaliser(spec, "per_freq")
    with pytest.raises(ValueError, match="unknown mode"):
        apply_normaliser(spec, "bogus", {})
    with pytest.raises(ValueError, match="'mean'"):
        apply_normaliser(spec, "train_per_freq", {})
    stats = fit_normaliser(torch.randn(3, 1, 7, 6), "train_per_freq")
    with pytest.raises(ValueError, match="shape"):
        apply_normaliser(spec, "train_per_freq", stats)
    assert apply_normaliser(spec, "none") is spec


def test_stats_roundtrip_through_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    spec = _two_amplitude_spec()
    stats = fit_normaliser(spec, "train_per_freq")
    save_file(stats, str(tmp_path / "stats.safetensors"))
    loaded = load_file(str(tmp_path / "stats.safetensors"))
    torch.testing.assert_close(
        apply_normaliser(spec, "train_per_freq", loaded), apply_normaliser(spec, "train_per_freq", stats)
    )


@pytest.mark.parametrize("mode", ["train_per_freq", "train_global", "per_window", "none"])
def test_transform_equals_stft_plus_apply_and_roundtrips(mode):
    params = dict(n_fft=32, hop=4, window="hann", center=True, log_eps=1e-6, fmax_bin=12, power=False)
    raw = torch.randn(6, 2, 178)
    spec = stft_logmag(raw, **params)
    stats = fit_normaliser(spec, mode)
    expected = apply_normaliser(spec, mode, stats)
    tr = SpectrogramTransform(**params, norm_mode=mode, stats=stats)
    torch.testing.assert_close(tr(raw), expected, rtol=1e-5, atol=1e-5)
    # config + stats round trip (stats as safetensors would give them back)
    tr2 = SpectrogramTransform.from_config(tr.to_config(), tr.normaliser_stats())
    torch.testing.assert_close(tr2(raw), expected, rtol=1e-5, atol=1e-5)
    # buffers travel in the state dict (registered model), the window does not need to
    keys = set(tr.state_dict())
    assert keys == ({"norm_mean", "norm_std"} if mode.startswith("train") else set())


def test_transform_config_errors():
    with pytest.raises(ValueError, match="stats"):
        SpectrogramTransform(32, 4, norm_mode="train_per_freq")
    with pytest.raises(ValueError, match="unknown keys"):
        SpectrogramTransform.from_config({"n_fft": 32, "hop": 4, "nfft": 3})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_stays_on_device():
    raw = torch.randn(9, 2, 178)
    spec = stft_logmag(raw, 32, 4, chunk_size=5)
    stats = fit_normaliser(spec, "train_per_freq")
    out = stft_logmag(raw.cuda(), 32, 4, chunk_size=5)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), spec, rtol=1e-4, atol=1e-4)
    tr = SpectrogramTransform(32, 4, norm_mode="train_per_freq", stats=stats).cuda()
    z = tr(raw.cuda())
    assert z.device.type == "cuda"
    torch.testing.assert_close(z.cpu(), apply_normaliser(spec, "train_per_freq", stats), rtol=1e-4, atol=1e-4)
    gpu_stats = fit_normaliser(out, "train_per_freq")
    torch.testing.assert_close(gpu_stats["std"].cpu(), stats["std"], rtol=1e-4, atol=1e-4)


def test_shape_at_the_boundaries():
    assert spectrogram_shape(16, 16, 4, center=False) == (9, 1)  # exactly one frame
    assert spectrogram_shape(17, 16, 4, center=False, fmax_bin=9) == (9, 1)
    assert spectrogram_shape(20, 16, 4, center=False, fmax_bin=1) == (1, 2)
    assert spectrogram_shape(20, 16, 4, center=True) == (9, 6)  # 8 samples padded on each side
    with pytest.raises(ValueError, match="shorter"):
        spectrogram_shape(15, 16, 4, center=False)
    with pytest.raises(ValueError, match="hop must be"):  # checked, not a ZeroDivisionError
        spectrogram_shape(100, 16, 0)
    with pytest.raises(ValueError, match="fmax_bin"):
        spectrogram_shape(100, 16, 4, fmax_bin=10)


def test_silence_is_log_eps_and_chunk_sizes():
    x = torch.zeros(2, 1, 64)
    out = stft_logmag(x, 16, 4, log_eps=1e-3, chunk_size=1)
    torch.testing.assert_close(out, torch.full_like(out, float(np.log(1e-3))))
    x = torch.randn(3, 2, 64)
    torch.testing.assert_close(stft_logmag(x, 16, 4, chunk_size=1), stft_logmag(x, 16, 4, chunk_size=6))
    torch.testing.assert_close(stft_logmag(x, 16, 4, chunk_size=5), stft_logmag(x, 16, 4))
    with pytest.raises(ValueError, match="chunk_size"):
        stft_logmag(x, 16, 4, chunk_size=0)


def test_reflect_padding_needs_more_than_half_a_window():
    short = torch.randn(1, 1, 8)  # n_fft // 2 samples
    with pytest.raises(ValueError, match="reflect padding"):
        stft_logmag(short, 16, 4)
    assert stft_logmag(torch.randn(1, 1, 9), 16, 4).shape == (1, 1, 9, 3)
    assert stft_logmag(short, 16, 4, pad_mode="constant").shape == (1, 1, 9, 3)
    with pytest.raises(ValueError, match="shorter"):
        stft_logmag(short, 16, 4, center=False)


def test_normaliser_on_one_window_low_variance_and_none():
    g = torch.Generator().manual_seed(1)
    spec = 0.1 * torch.randn(1, 2, 5, 300, generator=g) + 2.0  # one window, std ~0.1 per bin
    stats = fit_normaliser(spec, "train_per_freq")
    torch.testing.assert_close(stats["std"], spec.std(dim=(0, 3), correction=0, keepdim=True)[0], rtol=1e-4, atol=0)
    torch.testing.assert_close(stats["mean"], spec.mean(dim=(0, 3), keepdim=True)[0], rtol=1e-5, atol=0)
    g_stats = fit_normaliser(spec, "train_global")
    torch.testing.assert_close(g_stats["std"].reshape(2), spec.std(dim=(0, 2, 3), correction=0), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="N=0"):
        fit_normaliser(spec[:0], "train_per_freq")
    assert fit_normaliser(spec, "none") == {}


def test_per_window_has_unit_std_per_window():
    spec = _two_amplitude_spec()
    w = apply_normaliser(spec, "per_window")
    torch.testing.assert_close(w.std(dim=(2, 3), correction=0), torch.ones(40, 2), atol=1e-4, rtol=0)


def test_normaliser_checks_the_spectrogram_shape_and_type():
    for bad in (torch.randn(3, 5, 6), np.zeros((3, 1, 5, 6))):
        with pytest.raises(ValueError, match=r"fit_normaliser: spec must be a tensor of shape \(N, C, F, T\)"):
            fit_normaliser(bad, "train_per_freq")
        with pytest.raises(ValueError, match=r"apply_normaliser: spec must be a tensor of shape \(N, C, F, T\)"):
            apply_normaliser(bad, "per_window")
    with pytest.raises(ValueError, match="unknown mode"):
        apply_normaliser(torch.randn(3, 1, 5, 6), "per_freq")


def test_transform_on_another_batch_shape():
    raw = torch.randn(3, 1, 100)  # 3 rows, 17 bins, 26 frames: no size coincides
    tr = SpectrogramTransform(32, 4, norm_mode="per_window")
    torch.testing.assert_close(tr(raw), apply_normaliser(stft_logmag(raw, 32, 4), "per_window"), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected \(B, C, L\)"):
        tr(raw[0])
