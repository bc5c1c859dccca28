"""hamiltonian: quick variant end to end."""

import json
import math

import pytest

from chainlab import runner

METHODS = {"euler", "symplectic_euler", "leapfrog", "rk4"}


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    results = runner.run("hamiltonian", variant="quick", workdir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == results
    drift = saved["energy_drift"]
    assert set(drift) == METHODS
    # Euler gains energy, leapfrog keeps it at O(dt^2), RK4 is tiny over short runs.
    assert drift["euler"] > 10 * drift["symplectic_euler"]
    assert drift["symplectic_euler"] > 10 * drift["leapfrog"]
    assert drift["leapfrog"] < 1e-3
    by_system = saved["energy_drift_by_system"]
    assert set(by_system) == {"oscillator", "pendulum", "kepler"}
    # Explicit Euler on the oscillator multiplies the energy by (1 + dt^2) per step.
    steps, dt = saved["steps"], 0.01
    expected = (1 + dt**2) ** steps - 1
    assert by_system["oscillator"]["euler"] == pytest.approx(expected, rel=1e-9)
    for system, order in saved["leapfrog_energy_order"].items():
        assert abs(order - 2) < 0.2, system
        assert saved["energy_growth_second_half_over_first"][system]["leapfrog"] < 1.5
    assert saved["energy_rate_max_abs_error"] < 1e-5
    assert saved["energy_rate_chain_rule_vs_explicit_max_abs_error"] < 1e-12
    assert all(math.isfinite(v) for v in drift.values())
    networks = saved["hamiltonian_network"]
    for name in ("baseline", "hnn"):
        assert set(networks[name]) == {"train_loss", "test_loss", "energy_mse"}
        assert math.isfinite(networks[name]["energy_mse"])
    report = (tmp_path / "run" / "report.md").read_text()
    assert "FAIL" not in report
    for method in METHODS:  # every headline figure has a row
        assert f"| energy_drift.{method} " in report
    assert "| energy_rate_max_abs_error" in report
    assert "target=" not in report and "issue" not in report
    for figure in ("energy_error.png", "energy_rate.png"):
        assert (tmp_path / "run" / figure).stat().st_size > 0
