"""Bad inputs for the science functions of the library (see ``test_bad_inputs.py``)."""

from bad_input_case import Case

CASES: list[Case] = []
