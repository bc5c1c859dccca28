"""chainlab.runner.timing: interleaved turns, one median per call and round."""

import jax.numpy as jnp
import pytest

from chainlab.runner.timing import interleaved_rounds


def test_interleaved_rounds_times_every_call_in_every_round():
    counts = {"a": 0, "b": 0}

    def counted(name):
        def call():
            counts[name] += 1
            return jnp.ones(2) * counts[name]

        return call

    times = interleaved_rounds({n: counted(n) for n in counts}, 4, rounds=3, block=2)
    assert list(times) == ["a", "b"]
    assert all(t.shape == (3,) and (t > 0).all() for t in times.values())
    # Per round: five warm-up calls, four timed ones, one untimed call per block.
    assert counts == {"a": 3 * (5 + 4 + 2), "b": 3 * (5 + 4 + 2)}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rounds": 0, "block": 2}, "rounds must be >= 1, got 0"),
        ({"rounds": 1, "block": 0}, "repeats and block must be >= 1"),
    ],
)
def test_interleaved_rounds_refuses_empty_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        interleaved_rounds({"a": lambda: jnp.ones(1)}, 3, **settings)
