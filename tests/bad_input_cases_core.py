"""Bad inputs for the core functions of the library (see ``test_bad_inputs.py``)."""

import jax.numpy as jnp
from bad_input_case import Case

from chainlab import losses

CASES: list[Case] = [
    Case(
        "huber delta=-1",
        lambda: losses.huber(jnp.ones(3), delta=-1.0),
        ValueError,
        "delta must be > 0",
    ),
]
