"""Property-based fuzzing of the readers (bench/faults/fuzz.py), small and derandomized for the suite.

Property: every generated bad input either loads (a bad record rejected with
a reason naming it, all stage outputs written) or raises a TrlsError whose
message names the file, record or key (for the CLI: exit 2 saying so);
never another exception type, never a half-written output. ``make faults``
runs the same readers with many more inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FAULTS = Path(__file__).resolve().parents[2] / "bench" / "faults"
sys.path.insert(0, str(FAULTS))
import fuzz  # noqa: E402

#: inputs per reader: a few seconds each on 2 cores (the CLI cases start typer each time)
EXAMPLES = {"cli_values": 25, "params_values": 60, "params_file": 60}


@pytest.mark.parametrize("reader", sorted(fuzz.readers()))
def test_every_bad_input_loads_or_fails_naming_what_is_wrong(reader: str) -> None:
    counts = fuzz.fuzz_reader(reader, EXAMPLES.get(reader, 30), seed=None)
    assert counts["n_unnamed"] == 0, counts["unnamed"]
    assert counts["distinct"] >= 0.5 * counts["tried"] > 0  # hypothesis generated, not one input repeated
    assert counts["ok"] + counts["rejected"] + counts["named"] + counts["fallback"] == counts["distinct"]
    assert counts["rejected"] + counts["named"] > 0, counts  # the generators do produce bad inputs


def test_a_reader_that_raises_a_raw_exception_is_counted_unnamed(monkeypatch: pytest.MonkeyPatch) -> None:
    import trls_core.datasets.epilepsy.source as bonn

    def broken(text: str, where: str, expected: int) -> None:
        raise ValueError("could not convert")  # what the reader did before it named the line

    monkeypatch.setattr(bonn, "_parse_member", broken)
    counts = fuzz.fuzz_reader("bonn_zip", 30, seed=None)
    assert counts["n_unnamed"] > 0 and "ValueError" in counts["unnamed"][0]


def test_a_record_that_only_the_catch_all_rejects_is_counted_as_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    import trls_core.datasets.cinc2017 as cinc

    real = cinc.load_record

    def flaky(arc, rid, p):  # noqa: ANN001, ANN202 - the plugin's signature
        if rid == "A00003":
            raise ZeroDivisionError("a case no check anticipated")
        return real(arc, rid, p)

    monkeypatch.setattr(cinc, "load_record", flaky)
    counts = fuzz.fuzz_reader("wfdb_mat", 5, seed=None)
    assert counts["fallback"] == counts["distinct"] > 0 and counts["n_unnamed"] == 0
    assert "unexpected error ZeroDivisionError" in counts["fallback_examples"][0]


def test_a_stage_that_fails_but_leaves_output_is_counted_unnamed(monkeypatch: pytest.MonkeyPatch) -> None:
    import trls_core.stages.parquet as stage
    from trls_core.errors import DataError

    def half_written(root: Path, dataset: str, params: object) -> None:
        out = root / "data" / "parquet" / dataset
        out.mkdir(parents=True)
        (out / "windows.parquet").write_bytes(b"half")
        raise DataError(f"{root}/data/raw/{dataset}: failed after writing")

    monkeypatch.setattr(stage, "build_parquet", half_written)
    counts = fuzz.fuzz_reader("custom_npz", 3, seed=None)
    assert counts["n_unnamed"] == counts["distinct"] > 0 and "left ['fz']" in counts["unnamed"][0]


def test_inputs_are_counted_once_by_content() -> None:
    import fuzz_inputs as fi

    a = fi.Case({"w.csv": b"label,s0\n1,2\n"}, names=("w.csv",), settings={"fs": 100})
    b = fi.Case({"w.csv": b"label,s0\n1,2\n"}, names=("other",), settings={"fs": 100})
    c = fi.Case({"w.csv": b"label,s0\n1,3\n"}, names=("w.csv",), settings={"fs": 100})
    assert a.digest("custom_csv") == b.digest("custom_csv") != c.digest("custom_csv")
    assert a.digest("custom_csv") != a.digest("custom_ucr")
