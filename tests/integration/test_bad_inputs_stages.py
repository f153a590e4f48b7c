"""Issue 19 item 1 at the command line: a diverged run and corrupt stage outputs exit 2 naming the file / setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from trls_core.cli import app
from trls_core.paths import spectrogram_dir


def test_a_diverged_pretraining_exits_2_naming_the_setting_and_folder(
    tiny_project: Path, tiny_params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trls_core.train as train

    def diverge(*args: object, **kwargs: object) -> None:
        raise train.DivergedError("pretrain_encoder: loss is nan in epoch 1; lower lr (0.1) or check the input")

    monkeypatch.setattr(train, "pretrain_encoder", diverge)
    res = CliRunner().invoke(app, ["pretrain", "--params", str(tiny_params), "--root", str(tiny_project)])
    assert res.exit_code == 2, res.output
    assert "tfrnn_seed0: pretraining diverged (pretrain_encoder: loss is nan in epoch 1" in res.output
    assert "lower pretrain.lr" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_truncated_meta_json_exits_2_naming_it(tiny_project: Path, tiny_params: Path) -> None:
    meta = spectrogram_dir(tiny_project, "epilepsy") / "meta.json"
    meta.write_text(meta.read_text()[:40])
    args = ["--params", str(tiny_params), "--root", str(tiny_project)]
    for command in ("pretrain", "evaluate"):
        res = CliRunner().invoke(app, [command, *args])
        assert res.exit_code == 2, res.output
        assert f"{meta}: unreadable JSON" in res.output.replace("\n", "")
