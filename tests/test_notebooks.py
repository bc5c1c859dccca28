"""Every tutorial notebook runs from top to bottom, at its small (QUICK) size.

Each notebook reads ``CHAINLAB_NOTEBOOK_QUICK=1`` in its first code cell and shrinks
its training; one kernel per notebook, started in the notebooks folder with the
suite's compilation cache. A failing cell fails the test with that cell's error; a
cell that writes a warning to stderr fails it too. Every other notebook is run by
``test_notebooks_second_half.py``, so pytest-xdist gives the halves to two workers.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_SECONDS = 300


def _warnings_written(notebook: nbformat.NotebookNode) -> list[str]:
    return [
        output["text"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("name") == "stderr" and "Warning" in output.get("text", "")
    ]


NAMES = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("name", NAMES[::2])
def test_notebook_runs(name, child_env):
    run_notebook(name, child_env)


def run_notebook(name: str, child_env: dict) -> None:
    """Execute ``notebooks/name`` at QUICK size; fail on an error or a warning."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    # The kernel draws its figures inline: the suite's Agg backend would refuse.
    env = {k: v for k, v in child_env.items() if k != "MPLBACKEND"}
    env["CHAINLAB_NOTEBOOK_QUICK"] = "1"
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_SECONDS,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        pytest.fail(f"{name}: {error}", pytrace=False)
    warnings = _warnings_written(notebook)
    assert not warnings, f"{name} wrote warnings: {warnings}"
