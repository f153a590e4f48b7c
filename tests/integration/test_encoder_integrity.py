"""The stages keep weights, config and scores together: the digest in encoder.json and in the unit results."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from trls_core.config import load_params
from trls_core.io import sha256_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_pretrain_records_the_weights_digest_and_rebuilds_weights_that_do_not_match(
    tiny_project: Path, tiny_params: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from trls_core.stages.pretrain import pretrain_seed

    params = load_params(tiny_params)
    out = pretrain_seed(tiny_project, params, 0, progress=False)
    info = json.loads((out / "encoder.json").read_text())
    sha = sha256_file(out / "encoder.safetensors")
    assert info["weights_sha256"] == sha

    # weights from another write (the pair disagrees): logged, rebuilt from the final checkpoint, not retrained
    w = load_file(str(out / "encoder.safetensors"))
    save_file({k: v + 1.0 for k, v in w.items()}, str(out / "encoder.safetensors"))
    with caplog.at_level(logging.INFO, logger="trls_core.stages.pretrain"):
        pretrain_seed(tiny_project, params, 0, progress=False)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "rebuilding it" in said and str(out / "encoder.safetensors") in said, said
    assert sha256_file(out / "encoder.safetensors") == sha  # the trained weights, back
    rebuilt = json.loads((out / "encoder.json").read_text())
    assert rebuilt["history"] == info["history"] and rebuilt["resumed_from_epoch"] == 3  # nothing retrained

    # an encoder.json from before the digest was recorded: accepted once, the digest added, weights untouched
    del rebuilt["weights_sha256"]
    (out / "encoder.json").write_text(json.dumps(rebuilt))
    before = (out / "encoder.safetensors").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trls_core.stages.pretrain"):
        pretrain_seed(tiny_project, params, 0, progress=False)
    assert json.loads((out / "encoder.json").read_text())["weights_sha256"] == sha
    assert (out / "encoder.safetensors").stat().st_mtime_ns == before
    assert any("accepted once" in r.getMessage() for r in caplog.records)


def test_units_record_the_weights_they_scored_and_older_results_are_completed(
    tiny_project: Path, tiny_params: Path
) -> None:
    from trls_core.stages.evaluate import evaluate_all, evaluated_weights_sha256, unit_file, units_for
    from trls_core.stages.pretrain import pretrain_all

    params = load_params(tiny_params)
    (out,) = pretrain_all(tiny_project, params, progress=False)
    sha = sha256_file(out / "encoder.safetensors")
    rdir = evaluate_all(tiny_project, params, progress=False)
    docs = {u: json.loads(unit_file(tiny_project, params, u).read_text()) for u in units_for(params)}
    for u, doc in docs.items():
        scored = u.method in ("linear_probe", "finetune")
        assert (doc.get("encoder") == {"pretrain_seed": 0, "weights_sha256": sha}) == scored, (u, doc.get("encoder"))
    assert evaluated_weights_sha256(rdir, params.evaluate.task, 0) == sha

    # a result stored before the digest was recorded: reused (same fingerprint) and completed
    probe = next(u for u in docs if u.method == "linear_probe")
    path = unit_file(tiny_project, params, probe)
    old = {k: v for k, v in docs[probe].items() if k != "encoder"}
    path.write_text(json.dumps(old))
    evaluate_all(tiny_project, params, progress=False)
    now = json.loads(path.read_text())
    assert now["encoder"]["weights_sha256"] == sha
    assert now["fingerprint"] == old["fingerprint"] and now["result"] == old["result"]
