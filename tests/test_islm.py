"""islm: quick variant end to end."""

import json

import pytest

from chainlab import runner


@pytest.mark.slow
def test_quick_variant_end_to_end(tmp_path):
    results = runner.run("islm", variant="quick", workdir=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved == results
    # Mankiw, Macroeconomics, ch. 11, problem 3: Y = 1100, r = 6, Y = 850 + 500 / P.
    assert saved["equilibrium"] == pytest.approx({"Y": 1100.0, "r": 6.0}, rel=1e-12)
    assert saved["ad_slope_closed_form"] == pytest.approx(-125.0, rel=1e-12)
    assert saved["ad_slope_ift"] == pytest.approx(-125.0, rel=1e-12)
    assert saved["ad_slope_finite_difference"] == pytest.approx(-125.0, rel=1e-7)
    assert saved["comparative_statics"]["dY/dG"] == pytest.approx(2.0, rel=1e-12)
    shifts = saved["shifts"]["linear"]
    assert shifts["G"]["x"] == pytest.approx([1200.0, 7.0])
    assert shifts["M"]["x"] == pytest.approx([1150.0, 5.5])
    assert shifts["G"]["predicted"] == pytest.approx([1200.0, 7.0])
    semilog = saved["semilog"]
    assert semilog["ad_slope_ift"] == pytest.approx(
        semilog["ad_slope_closed_form"], rel=1e-10
    )
    assert semilog["ad_slope_ift"] == pytest.approx(
        semilog["ad_slope_finite_difference"], rel=1e-7
    )
    assert saved["random_economies"]["max_rel_error_ift_vs_closed_form"] < 1e-10
    report = (tmp_path / "run" / "report.md").read_text()
    assert "FAIL" not in report
    assert report.count("| pass |") == 9
    assert (tmp_path / "run" / "islm_ad.png").stat().st_size > 0
