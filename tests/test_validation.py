"""chainlab.validation: each helper accepts what it allows and names what it refuses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chainlab import validation as v


@pytest.mark.parametrize("value", [-1.0, 0.0, math.nan, np.array([1.0, -2.0])])
def test_check_positive_refuses_concrete_values_of_every_kind(value):
    for concrete in (value, np.asarray(value), jnp.asarray(value)):
        with pytest.raises(ValueError, match="tau must be > 0, got"):
            v.check_positive("tau", concrete)


def test_value_checks_accept_good_values_and_skip_tracers():
    v.check_positive("tau", jnp.array([0.5, 2.0]))
    v.check_nonnegative("margin", 0.0)
    v.check_finite("x", np.ones(3))
    v.check_in_range("momentum", 0.0, 0, 1)
    v.check_in_range("p", math.inf, 1, math.inf, high_inclusive=True)

    @jax.jit
    def traced(tau):
        v.check_positive("tau", tau)  # a tracer: not inspected
        return tau

    assert float(traced(-1.0)) == -1.0


def test_check_in_range_names_the_interval():
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.0"):
        v.check_in_range("momentum", 1.0, 0, 1)
    with pytest.raises(ValueError, match=r"p must be in \[1, inf\], got 0.5"):
        v.check_in_range("p", 0.5, 1, math.inf, high_inclusive=True)
    with pytest.raises(ValueError, match="got nan"):
        v.check_in_range("momentum", math.nan, 0, 1)


def test_check_at_least_and_choice():
    v.check_at_least("steps", np.int64(3), 1)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        v.check_at_least("steps", 0, 1)
    with pytest.raises(TypeError, match="steps must be an integer >= 1, got 2.0"):
        v.check_at_least("steps", 2.0, 1)
    with pytest.raises(TypeError, match="got True"):
        v.check_at_least("steps", True, 1)
    with pytest.raises(
        ValueError, match="side must be one of 'right', 'left'; got 'x'"
    ):
        v.check_choice("side", "x", ("right", "left"))


def test_shape_checks_fire_at_trace_time():
    v.check_rank("w", jnp.ones((2, 3)), {1, 2})
    with pytest.raises(ValueError, match=r"delta must be a scalar \(rank 0\), got"):
        v.check_rank("delta", jnp.ones(2), 0)
    with pytest.raises(
        ValueError, match=r"w must have rank 1 or 3, got shape \(2, 3\)"
    ):
        v.check_rank("w", jnp.ones((2, 3)), {1, 3})
    v.check_shape("x", jnp.ones((4, 2, 3)), (..., 3))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 4\), got \(2, 3\)"):
        v.check_shape("x", jnp.ones((2, 3)), (None, 4))
    with pytest.raises(ValueError, match=r"scale must have shape \(3,\), got \(2,\)"):
        v.check_shape("scale", jnp.ones(2), (3,))

    @jax.jit
    def traced(x):
        v.check_shape("x", x, (None, 4))
        return x

    with pytest.raises(ValueError, match="x must have shape"):
        traced(jnp.ones((2, 3)))


def test_check_same_shape_lists_every_name():
    v.check_same_shape(a=jnp.ones(2), b=np.ones(2))
    with pytest.raises(
        ValueError,
        match=r"a, b and c must have the same shape, got \(2,\), \(2,\) and \(3,\)",
    ):
        v.check_same_shape(a=jnp.ones(2), b=jnp.ones(2), c=jnp.ones(3))


def test_check_broadcastable_allows_scalars_and_equal_rank_ones():
    for good in (0.5, jnp.ones((1, 3)), jnp.ones((2, 1)), jnp.ones((2, 3))):
        v.check_broadcastable("slope", good, (2, 3))
    for bad in (jnp.ones(3), jnp.ones((2, 2)), jnp.ones((1, 2, 3))):
        with pytest.raises(ValueError, match="slope must be a scalar or an array"):
            v.check_broadcastable("slope", bad, (2, 3))


def test_check_dtype_and_as_real_float():
    v.check_dtype("labels", jnp.arange(3), jnp.integer)
    with pytest.raises(TypeError, match="labels must have a integer dtype, got float"):
        v.check_dtype("labels", jnp.zeros(2), jnp.integer)
    with pytest.raises(TypeError, match="mask must have a bool dtype"):
        v.check_dtype("mask", jnp.zeros(2), jnp.bool_)
    assert v.as_real_float("x", jnp.arange(2)).dtype == jnp.float32
    with pytest.raises(TypeError, match="x must be real, got dtype complex64"):
        v.as_real_float("x", jnp.ones(2, jnp.complex64))


def test_check_scalar_output_runs_nothing():
    calls = []

    def f(x):
        calls.append(1)
        return jnp.sum(x)

    v.check_scalar_output("f", f, jax.ShapeDtypeStruct((3,), jnp.float32))
    with pytest.raises(ValueError, match=r"f must return a scalar, got shape \(3,\)!"):
        v.check_scalar_output("f", lambda x: x, jnp.ones(3), hint="!")
    assert len(calls) == 1  # traced once by eval_shape, never run on data


def test_as_static_number():
    assert v.as_static_number("p", 2) == 2.0
    assert v.as_static_number("p", np.float32(1.5)) == 1.5
    assert v.as_static_number("p", math.inf) == math.inf
    for bad in ("2", True, None, jnp.asarray(2.0)):
        with pytest.raises(TypeError, match="p must be a Python number"):
            v.as_static_number("p", bad)
    with pytest.raises(ValueError, match="p must be a number, got nan"):
        v.as_static_number("p", math.nan)
