"""norm_coupling: the quick run end to end, once, with every figure checked on it."""

import json

import pytest

import chainlab.runner

F64_TOL = 1e-12  # float64 round-off of the identities (see the experiment)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("norm_coupling") / "run"
    returned = chainlab.runner.run("norm_coupling", variant="quick", workdir=workdir)
    return workdir, returned


@pytest.mark.slow
def test_only_batch_norm_couples_samples(quick):
    workdir, results = quick
    assert json.loads((workdir / "results.json").read_text()) == results
    assert results["batch_norm_cross_sample_norm"] > 0
    assert results["instance_norm_cross_sample_norm"] == 0.0
    assert results["layer_norm_cross_sample_norm"] == 0.0
    assert results["batch_norm_jacobian_closed_form_max_abs_error"] < F64_TOL


@pytest.mark.slow
def test_batch_norm_gradient_identities(quick):
    _, results = quick
    assert results["batch_norm_grad_sum_rel_float64"] < F64_TOL
    assert results["batch_norm_grad_sum_rel_float32"] < 1e-5
    assert results["batch_norm_grad_xhat_cosine_eps0_float64"] < F64_TOL
    assert results["batch_norm_grad_xhat_formula_error_float64"] < F64_TOL


@pytest.mark.slow
def test_per_example_decompositions(quick):
    _, results = quick
    bn = results["per_example"]["batch_norm"]
    ln = results["per_example"]["layer_norm"]
    assert bn["vmap_alone_first_layer_grad_max_abs"] == 0.0
    assert bn["vmap_alone_sum_rel_error"] > 0.1
    assert bn["vmap_axis_name_sum_rel_error"] < F64_TOL
    assert bn["vmap_axis_name_vs_jacrev_rel_diff"] > 0.01
    assert bn["other_sample_sensitivity"] > F64_TOL
    assert ln["vmap_alone_vs_jacrev_rel_diff"] < F64_TOL
    assert ln["jacrev_sum_rel_error"] < F64_TOL
    assert ln["other_sample_sensitivity"] < F64_TOL


@pytest.mark.slow
def test_report_and_figures(quick):
    workdir, _ = quick
    report = (workdir / "report.md").read_text()
    assert "FAIL" not in report
    assert "issue" not in report and "DESIGN" not in report
    assert "| layer_norm_other_sample_sensitivity |" in report
    assert (workdir / "cross_sample_jacobian.png").stat().st_size > 0
    assert (workdir / "per_example_gradients.png").stat().st_size > 0
