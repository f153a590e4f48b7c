"""Method assembly from params: which module, which views, what the fingerprint hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT, shrink_params
from trls_core.augment import TwoViews
from trls_core.augment_raw import RawTwoViews
from trls_core.config import resolve_params
from trls_core.errors import ConfigError
from trls_core.methods import method_params
from trls_core.models import build_encoder, encoder_input
from trls_core.models.loading import build_encoder_from_params
from trls_core.ssl.byol import BYOL
from trls_core.ssl.factory import build_ssl, build_views, input_kind
from trls_core.ssl.simclr import SimCLR
from trls_core.ssl.ts2vec import TS2Vec
from trls_core.ssl.ts_tcc import TSTCC
from trls_core.stages.pretrain import fingerprint


def _raw() -> dict:
    return shrink_params(yaml.safe_load((ROOT / "params.yaml").read_text()))


def _params(method: str):
    return resolve_params(method_params(_raw(), method))


@pytest.mark.parametrize(
    "method,module,views,kind",
    [
        ("trls", BYOL, TwoViews, "spectrogram"),
        ("simclr", SimCLR, TwoViews, "spectrogram"),
        ("ts_tcc", TSTCC, RawTwoViews, "raw"),
        ("ts2vec", TS2Vec, type(None), "raw"),
        ("byol_raw", BYOL, RawTwoViews, "raw"),
        ("supervised_tfrnn", type(None), type(None), "spectrogram"),
        ("trls_no_aug", BYOL, type(None), "spectrogram"),
    ],
)
def test_every_registered_method_assembles_and_trains_one_step(method, module, views, kind):
    params = _params(method)
    assert input_kind(params) == kind
    enc = build_encoder_from_params(params, 1)
    ssl = build_ssl(params, enc, enc.out_dim)
    aug = build_views(params)
    assert isinstance(ssl, module) and isinstance(aug, views)
    x = torch.randn(8, 1, 9, 33) if kind == "spectrogram" else torch.randn(8, 1, 64)
    assert enc(x).shape == (8, enc.out_dim)
    if ssl is None:
        return
    a, b = (x, x) if aug is None else aug(x)
    before = [p.detach().clone() for p in ssl.online_parameters()]
    loss = ssl(a, b)
    assert torch.isfinite(loss)
    opt = torch.optim.SGD(ssl.online_parameters(), lr=0.1)
    loss.backward()
    opt.step()
    ssl.update_target(0.9)
    assert any(not torch.equal(p0, p) for p0, p in zip(before, ssl.online_parameters()))


def test_all_registered_methods_validate():
    for name in _raw()["methods"]:
        _params(name)  # a bad override would raise naming the key


def test_method_needing_its_own_encoder_is_a_clear_error():
    raw = _raw()
    raw["pretrain"]["method"] = "ts_tcc"  # but model.encoder stays tfrnn
    params = resolve_params(raw)
    with pytest.raises(ConfigError, match="pretrain.method 'ts_tcc' needs model.encoder 'tstcc'"):
        build_views(params)


def test_unknown_method_and_encoder_fail_naming_the_key():
    raw = _raw()
    raw["pretrain"]["method"] = "moco"
    with pytest.raises(ConfigError, match="pretrain.method"):
        resolve_params(raw)
    with pytest.raises(ValueError, match="unknown encoder"):
        encoder_input("resnet")


def test_fingerprint_hashes_only_what_the_method_reads():
    meta = {"parquet_sha256": "x", "stft": {}}
    base = resolve_params(_raw())  # the params file itself (no compare.settings merged)
    fp = fingerprint(base, 0, meta)
    # another encoder's section or the raw views do not touch a TFRNN/BYOL-on-spectrogram run
    raw = _raw()
    raw["model"]["cnn"]["width"] = 64
    raw["augment"]["raw"]["strong"]["jitter_sigma"] = 0.1
    assert fingerprint(resolve_params(raw), 0, meta) == fp
    # its own settings do
    raw["model"]["tfrnn"]["dim"] = 12
    assert fingerprint(resolve_params(raw), 0, meta) != fp
    raw["model"]["tfrnn"]["dim"] = base.model.tfrnn.dim
    raw["pretrain"]["method"] = "simclr"
    assert fingerprint(resolve_params(raw), 0, meta) != fp
    # and for a raw method, its views do
    r1, r2 = _params("byol_raw"), resolve_params(method_params(_raw(), "byol_raw"))
    assert fingerprint(r1, 0, meta) == fingerprint(r2, 0, meta)
    raw2 = method_params(_raw(), "byol_raw")
    raw2["augment"]["raw"]["strong"]["jitter_sigma"] = 0.1
    assert fingerprint(resolve_params(raw2), 0, meta) != fingerprint(r1, 0, meta)


def test_max_train_length_reaches_ts2vec_and_only_its_fingerprint():
    """CinC's crop bound must shape TS2Vec's crops, and must not invalidate stored runs of other methods."""
    meta = {"parquet_sha256": "x", "stft": {}}
    for name in ("trls", "ts_tcc"):
        raw = method_params(_raw(), name)
        fp = fingerprint(resolve_params(raw), 0, meta)
        raw["pretrain"]["max_train_length"] = 64
        assert fingerprint(resolve_params(raw), 0, meta) == fp, name
    raw = method_params(_raw(), "ts2vec")
    unset = resolve_params(raw)
    fp = fingerprint(unset, 0, meta)
    raw["pretrain"]["max_train_length"] = 64
    bound = resolve_params(raw)
    assert fingerprint(bound, 0, meta) != fp
    raw["pretrain"]["max_train_length"] = None  # null is the same run as absent
    assert fingerprint(resolve_params(raw), 0, meta) == fp
    enc = build_encoder_from_params(bound, in_channels=1)
    model = build_ssl(bound, enc, enc.out_dim)
    assert isinstance(model, TS2Vec) and model.max_train_length == 64
    torch.manual_seed(0)
    v1, v2, crop = model.crop_views(torch.randn(4, 1, 300))
    assert crop.len1 <= 64 and crop.len2 <= 64 and crop.crop_l <= 64
    raw["pretrain"]["max_train_length"] = 1
    with pytest.raises(ConfigError, match="max_train_length"):
        resolve_params(raw)


def test_raw_encoders_registered_with_their_input_kind():
    for name, kind in (("timeconv", "raw"), ("tstcc", "raw"), ("ts2vec", "raw"), ("tfrnn", "spectrogram")):
        assert encoder_input(name) == kind
    enc = build_encoder("tstcc", in_channels=2, width=8, rep_dim=8, linear_head=False)
    assert enc(torch.randn(3, 2, 64)).shape == (3, enc.out_dim) == (3, 16)


def test_params_file_sections_exist(tmp_path: Path):
    params = resolve_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert params.pretrain.method == "byol" and params.model.encoder == "tfrnn"
    assert set(params.augment.raw.weak) and set(params.augment.raw.strong)
