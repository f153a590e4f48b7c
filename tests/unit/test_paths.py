"""One naming rule for report files, shared by the evaluation step and the flows."""

from pathlib import Path

from trls_core.paths import report_file


def test_report_file_names() -> None:
    d = Path("reports/epilepsy")
    assert report_file(d, "metrics.json", "binary") == d / "metrics.json"
    assert report_file(d, "metrics.json", "five_set") == d / "metrics_five_set.json"
    assert report_file(d, "confusion_matrix.png", "five_set") == d / "confusion_matrix_five_set.png"
