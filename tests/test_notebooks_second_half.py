"""The notebooks ``test_notebooks.py`` leaves out (every second one), in a file of
their own so pytest-xdist runs the two halves on different workers."""

import pytest
from test_notebooks import NAMES, run_notebook


@pytest.mark.parametrize("name", NAMES[1::2])
def test_notebook_runs(name, child_env):
    run_notebook(name, child_env)
