"""robust_regression: quick variant end to end, and its config guard."""

import json

import pytest

from chainlab import runner
from chainlab.errors import ExperimentFailed


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    results = runner.run("robust_regression", variant="quick", workdir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == results
    squared, huber = saved["param_error_squared"], saved["param_error_huber"]
    # 10% outliers at ~20 sigma move the squared fit by O(1); Huber stays near the
    # noise level, as does the absolute loss.
    assert squared > 1.0
    assert huber < squared / 4
    assert saved["param_error_absolute"] < squared / 4
    assert set(saved["param_error_by_loss"]) == {
        "squared",
        "huber(delta=0.5)",
        "huber(delta=1.345)",
        "huber(delta=3.0)",
        "absolute",
    }
    assert saved["max_reference_disagreement"] < 2e-3
    assert saved["huber_derivative_max_error"] == 0.0
    assert saved["huber_second_derivative_at_delta"] == [1.0, 1.0]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "FAIL" not in report
    for figure in ("huber_derivatives.png", "parameter_error.png"):
        assert (tmp_path / "run" / figure).stat().st_size > 0
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") > 0


def test_headline_delta_must_be_among_fitted_deltas(tmp_path):
    with pytest.raises(ExperimentFailed, match="huber_delta 2.0 must be one of"):
        runner.run(
            "robust_regression",
            variant="quick",
            overrides={"huber_delta": 2.0},
            workdir=tmp_path / "run",
        )
