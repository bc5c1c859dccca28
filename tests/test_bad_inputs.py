"""Every public function refuses its bad inputs with a one-line message.

The cases live beside this file, one list per area of the library
(``bad_input_cases_*.py``); each is ``Case(call, error, match)`` where ``call()``
must raise ``error`` with a message matching ``match`` that names the argument.
"""

import pytest
from bad_input_cases_core import CASES as CORE
from bad_input_cases_flows import CASES as FLOWS
from bad_input_cases_models import CASES as MODELS
from bad_input_cases_science import CASES as SCIENCE
from bad_input_cases_training import CASES as TRAINING

ALL_CASES = [*CORE, *FLOWS, *MODELS, *SCIENCE, *TRAINING]


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.id for case in ALL_CASES])
def test_bad_input_is_refused_in_one_line(case):
    with pytest.raises(case.error, match=case.match) as raised:
        case.call()
    assert "\n" not in str(raised.value)
