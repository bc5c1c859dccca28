"""gradient_paths: the quick run end to end, once, with its figures checked on it."""

import json

import pytest

import chainlab.runner

F64_TOL = 1e-12  # float64 round-off of the splits (see the experiment)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gradient_paths") / "run"
    returned = chainlab.runner.run("gradient_paths", variant="quick", workdir=workdir)
    return workdir, returned


@pytest.mark.slow
def test_splits_match_their_known_answers(quick):
    workdir, results = quick
    assert json.loads((workdir / "results.json").read_text()) == results
    for key in (
        "fanout_term_max_abs_error",
        "fanout_sum_vs_grad_max_abs",
        "batch_norm_terms_closed_form_max_abs",
        "shared_tau_closed_form_max_abs",
        "flow_initial_pathways_vs_gradient_pathways_max_abs",
        "flow_trained_pathways_vs_gradient_pathways_max_abs",
    ):
        assert results[key] < F64_TOL, key
    assert results["residual_sum_rel_error"] < 1e-5
    assert sum(results["fanout_mean_shares"]) == pytest.approx(1.0, abs=F64_TOL)
    assert set(results["attention_path_norms"]) == {"query", "key", "value"}
    assert results["decompose_over_grad_time"] > 0


@pytest.mark.slow
def test_report_and_figures(quick):
    workdir, results = quick
    report = (workdir / "report.md").read_text()
    assert "FAIL" not in report
    assert "issue" not in report and "DESIGN" not in report
    assert "| shared_tau_closed_form_max_abs |" in report
    for name in ("normalization_paths", "attention_paths", "residual_skip_share"):
        assert (workdir / f"{name}.png").stat().st_size > 0
    steps = results["residual_eval_steps"]
    assert all(len(v) == len(steps) for v in results["residual_skip_share"].values())
