"""CNN encoders and MLP heads: interfaces and the small-input edge cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trls_core.models import CNNEncoder, MLPHead, PredictionHead, ProjectionHead, TimeConvEncoder, build_encoder


@pytest.mark.parametrize("shape", [(2, 1, 17, 45), (2, 2, 33, 23), (2, 1, 1, 5)])
@pytest.mark.parametrize("depth", [1, 3, 5])
def test_cnn_encoder_shape(shape, depth):
    m = CNNEncoder(shape[1], width=4, depth=depth, rep_dim=7)
    out = m(torch.randn(*shape))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_cnn_encoder_rejects_wrong_channels():
    with pytest.raises(ValueError, match="CNNEncoder"):
        CNNEncoder(2, width=4)(torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("length", [178, 3000, 7])
def test_time_conv_encoder_shape(length):
    m = TimeConvEncoder(2, width=4, depth=3, rep_dim=9)
    assert m(torch.randn(3, 2, length)).shape == (3, 9)


def test_factory_builds_cnn():
    assert isinstance(build_encoder("CNN", in_channels=1, width=4), CNNEncoder)
    assert isinstance(build_encoder("timeconv", in_channels=1, width=4), TimeConvEncoder)


def test_mlp_head_structure_and_shape():
    h = MLPHead(10, 20, 5)
    kinds = [type(layer) for layer in h.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert h(torch.randn(4, 10)).shape == (4, 5)
    no_bn = MLPHead(10, 20, 5, batch_norm=False)
    assert not any(isinstance(layer, nn.BatchNorm1d) for layer in no_bn.net)


def test_byol_head_defaults():
    proj, pred = ProjectionHead(), PredictionHead()
    assert (proj.in_dim, proj.hidden_dim, proj.out_dim) == (128, 256, 64)
    assert (pred.in_dim, pred.hidden_dim, pred.out_dim) == (64, 256, 64)
    assert pred(proj(torch.randn(3, 128))).shape == (3, 64)
