"""Frozen representations of a split: :func:`embed`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trls_core.arrays import as_tensor
from trls_core.errors import DataError

__all__ = ["embed"]


@torch.no_grad()
def embed(
    encoder: nn.Module,
    x: torch.Tensor | np.ndarray,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Frozen representations (N, R) of ``x`` (N, ...) as float32 numpy.

    Runs in eval mode (no dropout, BatchNorm running stats) and restores the
    module's previous train/eval mode afterwards, so probing an encoder in
    the middle of pretraining does not silently switch it to eval.
    Inputs stay on the CPU and move to ``device`` batch by batch, so a whole
    split never has to fit in accelerator memory. The encoder is moved to
    ``device`` (in place): encoders are loaded from their safetensors on the
    CPU, and on a GPU host the probe would otherwise fail on CUDA inputs
    against CPU weights.
    """
    x = as_tensor(x, "embed")
    encoder.to(device)
    was_training = encoder.training
    encoder.eval()
    try:
        out = []
        for i in range(0, len(x), max(1, int(batch_size))):
            xb = x[i : i + batch_size].to(device=device, dtype=torch.float32, non_blocking=True)
            z = encoder(xb)
            if z.ndim != 2:
                raise DataError(f"embed: encoder must return (B, R), got shape {tuple(z.shape)}")
            out.append(z.float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
    finally:
        encoder.train(was_training)
