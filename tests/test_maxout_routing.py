"""maxout_routing: the quick run end to end, once, with every figure checked on it."""

import json

import pytest

import chainlab.runner

PIECES = 3  # configs/maxout_routing.py, quick variant


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("maxout_routing") / "run"
    returned = chainlab.runner.run("maxout_routing", variant="quick", workdir=workdir)
    return workdir, returned


@pytest.mark.slow
def test_results_are_saved_as_returned(quick):
    workdir, returned = quick
    assert json.loads((workdir / "results.json").read_text()) == returned


@pytest.mark.slow
def test_only_the_winning_piece_gets_gradient(quick):
    _, results = quick
    assert results["nonwinner_grad_max_abs"] == 0.0
    assert results["nonzero_piece_grad_fraction"] == [1 / PIECES]
    assert results["pieces_with_grad_per_unit"] == [1, 1]
    assert results["test_accuracy"] > 0.5  # quick run: far above chance (0.1)


@pytest.mark.slow
def test_ties_go_to_the_lowest_piece_where_jnp_max_splits_them(quick):
    _, results = quick
    assert results["tie_units"] > 0
    assert results["tie_pieces_with_grad_max"] == 1
    assert results["tie_grad_all_to_lowest_index"] is True
    assert results["jnp_max_tie_share_piece0"] == pytest.approx(0.5)
    assert results["tie_total_grad_max_abs_diff"] < 1e-6
    assert results["blank_input_pieces_tied"] == PIECES
    assert results["blank_input_pieces_with_grad"] == 1
    # 1/3 per tied piece, averaged in float32 over the batch (rounding ~1e-6).
    share = results["blank_input_jnp_max_share_piece0"]
    assert share == pytest.approx(1 / PIECES, abs=1e-5)


@pytest.mark.slow
def test_report_figure_and_metrics(quick):
    workdir, _ = quick
    report = (workdir / "report.md").read_text()
    assert "| nonwinner_grad_max_abs | 0.0 | = 0.0 | Goodfellow et al. 2013" in report
    assert "issue" not in report and "DESIGN" not in report
    # Every check but the accuracy target (too few steps in the quick run) passes.
    failing = [line for line in report.splitlines() if line.endswith("| FAIL |")]
    assert all(line.startswith("| test_accuracy |") for line in failing)
    assert (workdir / "piece_wins.png").stat().st_size > 0
    records = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
    ]
    assert {r["step"] for r in records if r.get("split") == "eval"} >= {0, 150}
