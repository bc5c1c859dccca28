"""End-to-end test of the norm_coupling experiment (quick variant)."""

import json

import pytest

import chainlab.runner


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    workdir = tmp_path / "run"
    returned = chainlab.runner.run("norm_coupling", variant="quick", workdir=workdir)
    results = json.loads((workdir / "results.json").read_text())
    assert results == returned
    assert results["batch_norm_cross_sample_norm"] > 0
    assert results["instance_norm_cross_sample_norm"] == 0.0
    assert results["layer_norm_cross_sample_norm"] == 0.0
    assert results["batch_norm_jacobian_closed_form_max_abs_error"] < 1e-12
    assert results["batch_norm_grad_sum_rel_float64"] < 1e-12
    assert results["batch_norm_grad_sum_rel_float32"] < 1e-5
    assert results["batch_norm_grad_xhat_cosine_eps0_float64"] < 1e-12
    assert results["batch_norm_grad_xhat_formula_error_float64"] < 1e-12
    bn = results["per_example"]["batch_norm"]
    ln = results["per_example"]["layer_norm"]
    assert bn["vmap_alone_first_layer_grad_max_abs"] == 0.0
    assert bn["vmap_alone_sum_rel_error"] > 0.1
    assert bn["vmap_axis_name_sum_rel_error"] < 1e-12
    assert bn["vmap_axis_name_vs_jacrev_rel_diff"] > 0.01
    assert ln["vmap_alone_vs_jacrev_rel_diff"] < 1e-12
    assert ln["other_sample_sensitivity"] == 0.0
    report = (workdir / "report.md").read_text()
    assert "FAIL" not in report
    assert (workdir / "cross_sample_jacobian.png").stat().st_size > 0
    assert (workdir / "per_example_gradients.png").stat().st_size > 0
