"""Bad inputs for ``chainlab.flows`` (see ``test_bad_inputs.py``)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from bad_input_case import Case

from chainlab import flows


def _conditional_log_prob(x, context=None, *, context_dim=3):
    flow = flows.maf(2, hidden=(4,), context_dim=context_dim)
    return flow.log_prob(flow.init(jax.random.key(0)), x, context)


def _realnvp_log_prob(x):
    flow = flows.realnvp(2, num_layers=2, hidden=(4,))
    return flow.log_prob(flow.init(jax.random.key(0)), x)


# Every public constructor and function of chainlab.flows with its bad inputs, in the
# format of tests/test_bad_inputs.py: call() raises error, one line matching match.
CASES = [
    Case(
        "realnvp dim=1",
        lambda: flows.realnvp(1),
        ValueError,
        "dim must be an integer >= 2",
    ),
    Case(
        "realnvp num_layers=0",
        lambda: flows.realnvp(2, num_layers=0),
        ValueError,
        "num_layers must be an integer >= 1",
    ),
    Case(
        "realnvp num_layers=2.0",
        lambda: flows.realnvp(2, num_layers=2.0),
        TypeError,
        "num_layers must be an integer",
    ),
    Case(
        "realnvp mask",
        lambda: flows.realnvp(2, mask="diagonal"),
        ValueError,
        "mask must be one of 'half', 'alternating'",
    ),
    Case(
        "realnvp hidden=(0,)",
        lambda: flows.realnvp(2, hidden=(0,)),
        ValueError,
        "hidden widths must be an integer >= 1",
    ),
    Case(
        "realnvp input shape",
        lambda: _realnvp_log_prob(jnp.zeros((5, 3))),
        ValueError,
        r"flow input must have shape \(\*, 2\), got \(5, 3\)",
    ),
    Case(
        "realnvp input rank",
        lambda: _realnvp_log_prob(jnp.zeros(2)),
        ValueError,
        r"flow input must have shape \(\*, 2\)",
    ),
    Case(
        "glow not divisible",
        lambda: flows.glow((6, 6, 1), levels=2),
        ValueError,
        "divisible by",
    ),
    Case(
        "glow image rank",
        lambda: flows.glow((8, 8), levels=1),
        ValueError,
        "height, width, channels",
    ),
    Case(
        "glow levels=0",
        lambda: flows.glow((8, 8, 1), levels=0),
        ValueError,
        "levels must be an integer >= 1",
    ),
    Case(
        "glow hidden=0",
        lambda: flows.glow((8, 8, 1), hidden=0),
        ValueError,
        "hidden must be an integer >= 1",
    ),
    Case(
        "logit alpha=0.5",
        lambda: flows.logit(levels=17.0, alpha=0.5),
        ValueError,
        r"alpha must be in \[0, 0.5\)",
    ),
    Case(
        "logit alpha=-0.1",
        lambda: flows.logit(levels=17.0, alpha=-0.1),
        ValueError,
        r"alpha must be in \[0, 0.5\)",
    ),
    Case(
        "logit levels=array(-1)",
        lambda: flows.logit(levels=jnp.array(-1.0)),
        ValueError,
        "levels must be > 0",
    ),
    Case(
        "logit levels=inf",
        lambda: flows.logit(levels=np.inf),
        ValueError,
        "levels must be finite",
    ),
    Case(
        "standardize std=0",
        lambda: flows.standardize(jnp.zeros(2), jnp.array([1.0, 0.0])),
        ValueError,
        "std must be > 0",
    ),
    Case(
        "standardize mean=nan",
        lambda: flows.standardize(jnp.array([0.0, jnp.nan]), jnp.ones(2)),
        ValueError,
        "mean must be finite",
    ),
    Case(
        "standardize shapes",
        lambda: flows.standardize(jnp.zeros(2), jnp.ones(3)),
        ValueError,
        "mean and std must have the same shape",
    ),
    Case(
        "standardize input shape",
        lambda: flows.standardize(jnp.zeros(2), jnp.ones(2)).forward(
            {}, jnp.zeros((4, 3))
        ),
        ValueError,
        r"standardize input must have shape \(\*, 2\)",
    ),
    Case(
        "invertible_linear permutation shape",
        lambda: flows.invertible_linear(3, permutation=jnp.arange(2)),
        ValueError,
        r"permutation must have shape \(3,\)",
    ),
    Case(
        "invertible_linear repeated index",
        lambda: flows.invertible_linear(3, permutation=jnp.array([0, 0, 1])),
        ValueError,
        "permutation must hold each of 0..2 once",
    ),
    Case(
        "invertible_linear channels=0",
        lambda: flows.invertible_linear(0),
        ValueError,
        "channels must be an integer >= 1",
    ),
    Case(
        "permutation float",
        lambda: flows.permutation(jnp.array([0.0, 1.0])),
        TypeError,
        "perm must be a 1-D integer array",
    ),
    Case(
        "permutation repeated index",
        lambda: flows.permutation(jnp.array([1, 1])),
        ValueError,
        "perm must hold each of 0..1 once",
    ),
    Case(
        "reverse dim=0",
        lambda: flows.reverse(0),
        ValueError,
        "dim must be an integer >= 1",
    ),
    Case(
        "reshape sizes", lambda: flows.reshape((2, 2), (5,)), ValueError, "sizes differ"
    ),
    Case(
        "squeeze odd height",
        lambda: flows.squeeze().forward({}, jnp.zeros((1, 3, 4, 1))),
        ValueError,
        "even h and w",
    ),
    Case(
        "actnorm channels=0",
        lambda: flows.actnorm(0),
        ValueError,
        "channels must be an integer >= 1",
    ),
    Case(
        "actnorm eps=0",
        lambda: flows.actnorm(2, eps=0.0),
        ValueError,
        "eps must be > 0",
    ),
    Case(
        "actnorm input channels",
        lambda: flows.actnorm(2).forward({}, jnp.zeros((3, 4))),
        ValueError,
        r"actnorm input must have shape \(\*, \.\.\., 2\), got \(3, 4\)",
    ),
    Case(
        "half_mask dim=1",
        lambda: flows.half_mask(1),
        ValueError,
        "dim must be an integer >= 2",
    ),
    Case(
        "alternating_mask dim=1",
        lambda: flows.alternating_mask(1),
        ValueError,
        "dim must be an integer >= 2",
    ),
    Case(
        "checkerboard_mask width=0",
        lambda: flows.checkerboard_mask(2, 0, 1),
        ValueError,
        "width must be an integer >= 1",
    ),
    Case(
        "channel_mask channels=1",
        lambda: flows.channel_mask(2, 2, 1),
        ValueError,
        "channels must be an integer >= 2",
    ),
    Case(
        "affine_coupling mask=0.5",
        lambda: flows.affine_coupling(
            jnp.array([0.5, 1.0]), flows.mlp_conditioner(2, (8,), activation=jnp.tanh)
        ),
        ValueError,
        "mask must hold only 0 and 1",
    ),
    Case(
        "mlp_conditioner dim=0",
        lambda: flows.mlp_conditioner(0, (4,)),
        ValueError,
        "dim must be an integer >= 1",
    ),
    Case(
        "conv_conditioner kernel_size=2",
        lambda: flows.conv_conditioner(2, 4, kernel_size=2),
        ValueError,
        "kernel_size must be odd",
    ),
    Case(
        "conv_conditioner hidden=0",
        lambda: flows.conv_conditioner(2, 0),
        ValueError,
        "hidden must be an integer >= 1",
    ),
    Case(
        "chain of nothing", lambda: flows.chain(), ValueError, "at least one bijection"
    ),
    Case(
        "scan ragged structure",
        lambda: flows.scan(flows.reverse, (jnp.zeros(2), jnp.zeros(3))),
        ValueError,
        "leading",
    ),
    Case(
        "factor_out odd channels",
        lambda: flows.factor_out(flows.reverse(1)).forward({}, jnp.zeros((1, 3))),
        ValueError,
        "even number of channels",
    ),
    Case(
        "with_average decay=1",
        lambda: flows.with_average(optax.sgd(0.1), decay=1.0),
        ValueError,
        r"decay must be in \[0, 1\)",
    ),
    Case(
        "with_average decay=-0.1",
        lambda: flows.with_average(optax.sgd(0.1), decay=-0.1),
        ValueError,
        r"decay must be in \[0, 1\)",
    ),
    Case(
        "bits_per_dim event_size=0",
        lambda: flows.bits_per_dim(jnp.zeros(3), 0),
        ValueError,
        "event_size must be an integer >= 1",
    ),
    Case(
        "bits_per_dim rank",
        lambda: flows.bits_per_dim(jnp.zeros((3, 2)), 4),
        ValueError,
        "log_prob must have rank 1",
    ),
    Case(
        "two_moons_log_prob noise=0",
        lambda: flows.two_moons_log_prob(np.zeros((1, 2)), noise=0.0),
        ValueError,
        "noise must be > 0",
    ),
    Case(
        "two_moons_log_prob shape",
        lambda: flows.two_moons_log_prob(np.zeros((1, 3))),
        ValueError,
        r"x must have shape \(\*, 2\)",
    ),
    Case(
        "nearest_distances sizes",
        lambda: flows.nearest_distances(np.zeros((1, 3)), np.zeros((2, 4))),
        ValueError,
        "points of one size",
    ),
    Case(
        "neural_spline_flow bins=0",
        lambda: flows.neural_spline_flow(2, bins=0),
        ValueError,
        "bins must be an integer >= 1",
    ),
    Case(
        "neural_spline_flow bound<0",
        lambda: flows.neural_spline_flow(2, bound=-1.0),
        ValueError,
        "bound must be > 0",
    ),
    Case(
        "maf dim=0",
        lambda: flows.maf(0),
        ValueError,
        "dim must be an integer >= 2",
    ),
    Case(
        "maf transformer",
        lambda: flows.maf(2, transformer="quadratic"),
        ValueError,
        "transformer must be one of 'affine', 'spline'",
    ),
    Case(
        "maf context_dim<0",
        lambda: flows.maf(2, context_dim=-1),
        ValueError,
        "context_dim must be an integer >= 0",
    ),
    Case(
        "conditional flow without a context",
        lambda: _conditional_log_prob(jnp.zeros((4, 2))),
        ValueError,
        r"flow is conditional: pass a context of shape \(n, 3\)",
    ),
    Case(
        "conditional flow context shape",
        lambda: _conditional_log_prob(jnp.zeros((4, 2)), jnp.zeros((5, 3))),
        ValueError,
        r"flow context must have shape \(4, 3\), got \(5, 3\)",
    ),
    Case(
        "unconditional flow given a context",
        lambda: _conditional_log_prob(
            jnp.zeros((4, 2)), jnp.zeros((4, 3)), context_dim=0
        ),
        ValueError,
        r"flow is unconditional \(context_dim=0\): got a context",
    ),
    Case(
        "rational_quadratic_spline knot shapes",
        lambda: flows.rational_quadratic_spline(
            jnp.zeros(3), jnp.zeros(4), jnp.zeros(5), jnp.ones(4)
        ),
        ValueError,
        "x_knots, y_knots and derivatives must share one shape",
    ),
]
