"""Bad inputs for the training functions of the library (see ``test_bad_inputs.py``)."""

from bad_input_case import Case

CASES: list[Case] = []
