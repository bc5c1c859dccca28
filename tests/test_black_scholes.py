"""black_scholes: quick variant end to end."""

import json

import pytest

from chainlab import runner


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    results = runner.run("black_scholes", variant="quick", workdir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == results
    # The textbook option: call 10.4506, put 5.5735.
    assert round(saved["price_closed_form"]["call"], 4) == 10.4506
    assert round(saved["price_closed_form"]["put"], 4) == 5.5735
    # Quick grid (200 x 50): error ~3e-3, second order.
    for kind in ("call", "put"):
        assert saved["price_heat_equation"][kind] == pytest.approx(
            saved["price_closed_form"][kind], abs=5e-3
        )
    convergence = saved["convergence"]
    errors = convergence["max_abs_error"]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False))
    assert abs(convergence["order"] - 2) < 0.2
    assert saved["max_greek_rel_error"] < 1e-12
    assert saved["max_greek_fd_rel_error"] < 1e-6
    for residuals in saved["pde_residual_max_abs"].values():
        assert residuals["black_scholes_pde"] < 1e-9
        assert residuals["heat_equation"] < 1e-9
    strikes = saved["prices_by_strike"]
    assert len(strikes["call"]["heat_equation"]) == len(strikes["strikes"])
    report = (tmp_path / "run" / "report.md").read_text()
    assert "FAIL" not in report
    assert report.count("| pass |") == 9
    for figure in ("heat_equation.png", "greeks.png"):
        assert (tmp_path / "run" / figure).stat().st_size > 0
