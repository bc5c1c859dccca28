"""Declarative checks: one threshold renders the target text and decides the verdict."""

import numpy as np
import pytest

from chainlab.runner.figures import estimator_panels
from chainlab.runner.report import format_value, make_check, markdown_table
from chainlab.runner.workdir import Workdir


@pytest.mark.parametrize(
    ("threshold", "measured", "target", "passed"),
    [
        ({"at_most": 1e-6}, 1e-7, "<= 1.000e-06", True),
        ({"at_most": 1e-6}, 2e-6, "<= 1.000e-06", False),
        ({"at_least": 0.95}, 0.95, ">= 0.95", True),
        ({"below": 1.0}, 1.0, "< 1", False),
        ({"above": 0.0}, np.array([1.0, 2.0]), "> 0.0", True),
        ({"above": 0.0}, np.array([1.0, -2.0]), "> 0.0", False),
        ({"between": (1.9, 2.1)}, 2.0, "in [1.9, 2.1]", True),
        ({"equals": 0}, 0, "= 0", True),
        ({"equals": [1, 2]}, np.array([1, 3]), "= [1, 2]", False),
        ({"close_to": 2.0, "rtol": 1e-3}, 2.001, "2 within 0.001 relative", True),
        ({"close_to": 2.0, "rtol": 1e-3}, 2.01, "2 within 0.001 relative", False),
        ({"close_to": 0.0, "atol": 1e-9}, 1e-10, "0.0 within 1e-09", True),
    ],
)
def test_threshold_renders_target_and_verdict(threshold, measured, target, passed):
    check = make_check("q", measured, source="maths", **threshold)
    assert check.target == target
    assert check.passed is passed
    assert check.row()[-1] == ("pass" if passed else "FAIL")


def test_info_has_no_verdict_and_label_names_the_reference():
    assert make_check("t", 3.0, source="s", info="reported").passed is None
    check = make_check("d", 1.0, source="s", close_to=1.0, rtol=1e-6, label="closed")
    assert check.target == "closed: 1 within 1e-06 relative"


@pytest.mark.parametrize("threshold", [{}, {"at_most": 1.0, "at_least": 0.0}])
def test_exactly_one_threshold_is_required(threshold):
    with pytest.raises(ValueError, match="needs exactly one of"):
        make_check("q", 1.0, source="s", **threshold)


def test_markdown_table_formats_cells_and_refuses_ragged_rows():
    table = markdown_table(["a", "b"], [["x", 1.23456789], ["y", 1e-9]])
    assert table.splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x | 1.23457 |",
        "| y | 1.000e-09 |",
    ]
    with pytest.raises(ValueError, match="has 1 cells, need 2"):
        markdown_table(["a", "b"], [["x"]])


def test_estimator_panels_draw_every_estimator_against_the_exact_value():
    summary = {
        "num_projections": [1, 2, 4],
        "exact": [2.0, 3.0],
        "mean": [[2.1, 3.0], [1.9, 3.1], [2.0, 2.9]],
        "variance": [[0.4, 0.1], [0.2, 0.05], [0.1, 0.02]],
        "relative_variance": [0.1, 0.05, 0.025],
        "predicted_relative_variance": [0.1, 0.05, 0.025],
    }
    figure = estimator_panels({"a": summary, "b": summary}, ylabel="R")
    left, right = figure.axes
    labels = [text.get_text() for text in left.get_legend().get_texts()]
    assert labels == ["a: mean +- std", "b: mean +- std", "exact"]
    assert left.get_ylabel() == "R" and left.get_xscale() == "log"
    assert right.get_xscale() == right.get_yscale() == "log"
    assert len(right.get_legend().get_texts()) == 2
    (exact,) = [line for line in left.get_lines() if line.get_label() == "exact"]
    assert exact.get_ydata()[0] == 2.0


@pytest.mark.parametrize(
    ("judged", "measured", "target", "verdict"),
    [
        (True, 2.0, "<= 3", "pass"),
        (True, 4.0, "<= 3", "FAIL"),
        (False, 4.0, "<= 3 at paper scale", "info"),
    ],
)
def test_goal_is_judged_or_shown_as_info_at_paper_scale(
    tmp_path, judged, measured, target, verdict
):
    work = Workdir(tmp_path)
    work.goal("step ratio", measured, source="s", judged=judged, at_most=3.0)
    assert work.checks[0].row()[1:] == [format_value(measured), target, "s", verdict]


def test_a_goal_given_as_info_stays_as_it_is(tmp_path):
    work = Workdir(tmp_path)
    work.goal("ratio", 1.0, source="s", judged=False, info="set for the MLP only")
    assert work.checks[0].target == "set for the MLP only"


def test_table_notes_a_titled_markdown_table(tmp_path):
    work = Workdir(tmp_path)
    work.table(["a"], [[1]], title="Sweep")
    work.table(["b"], [[2]])
    assert work.sections == ["Sweep:\n\n| a |\n|---|\n| 1 |", "| b |\n|---|\n| 2 |"]
