"""robust_regression: the quick variant run once, and its config guard."""

import json

import pytest

from chainlab import runner
from chainlab.errors import ExperimentFailed


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One end-to-end quick run, shared by every test below."""
    workdir = tmp_path_factory.mktemp("robust_regression") / "run"
    returned = runner.run("robust_regression", variant="quick", workdir=workdir)
    return workdir, returned, json.loads((workdir / "results.json").read_text())


@pytest.mark.slow
def test_quick_run_saves_what_it_returns(quick):
    workdir, returned, saved = quick
    assert saved == returned
    report = (workdir / "report.md").read_text()
    assert "FAIL" not in report
    for figure in ("huber_derivatives.png", "parameter_error.png"):
        assert (workdir / figure).stat().st_size > 0
    assert (workdir / "metrics.jsonl").read_text().count("\n") > 0


@pytest.mark.slow
def test_quick_run_huber_and_absolute_resist_outliers(quick):
    _, _, saved = quick
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
    assert saved["num_outliers"] == 20  # 10% of the quick variant's 200 samples


@pytest.mark.slow
def test_quick_run_huber_derivatives_at_the_kinks(quick):
    _, _, saved = quick
    assert saved["huber_derivative_max_error"] == 0.0
    assert saved["huber_second_derivative_at_delta"] == [1.0, 1.0]


def test_headline_delta_must_be_among_fitted_deltas(tmp_path):
    with pytest.raises(ExperimentFailed, match="huber_delta must be one of"):
        runner.run(
            "robust_regression",
            variant="quick",
            overrides={"huber_delta": 2.0},
            workdir=tmp_path / "run",
        )
