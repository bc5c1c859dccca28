"""Rational-quadratic splines: the closed forms against FlowJAX's spline on the same
knots, the spline's defining properties, derivatives three ways, and the coupling's
two evaluation paths (concrete masks pick the transformed entries; traced masks, as
in a scan over masks, restore the kept ones).

The bijection invariants (inverse, log-det against ``slogdet(jacfwd)``, the density
integrating to one) run with every other bijection in ``test_flows.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab import flows

# float64 closed forms agree to rounding error.
EXACT_TOL_F64 = 1e-12
# check_grads compares against central differences in float64.
GRAD_TOL = 1e-6
BINS, BOUND = 5, 3.0


def _random_knots(key, bins=BINS, bound=BOUND):
    """Increasing knots on [-bound, bound] (shared ends) and positive derivatives."""
    k_x, k_y, k_d = jax.random.split(key, 3)

    def knots(k):
        widths = jax.random.uniform(k, (bins,), minval=0.2, maxval=1.0)
        unit = jnp.concatenate([jnp.zeros(1), jnp.cumsum(widths) / jnp.sum(widths)])
        return bound * (2 * unit - 1)

    derivatives = jnp.exp(jax.random.normal(k_d, (bins + 1,)))
    return knots(k_x), knots(k_y), derivatives


def test_spline_matches_flowjax_on_the_same_knots(key, x64):
    """FlowJAX's RationalQuadraticSpline with the same knots and derivatives: forward,
    inverse and both log-dets agree inside the interval and in the tails."""
    pytest.importorskip("flowjax")
    import equinox as eqx
    import paramax
    from flowjax.bijections import RationalQuadraticSpline

    reference = RationalQuadraticSpline(knots=BINS - 1, interval=BOUND)
    params, static = eqx.partition(reference, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        leaf + jax.random.normal(k, leaf.shape)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    spline = paramax.unwrap(eqx.combine(jax.tree.unflatten(tree, noisy), static))
    knots = (spline.x_pos, spline.y_pos, spline.derivatives)
    x = jnp.linspace(-1.5 * BOUND, 1.5 * BOUND, 181)

    @jax.jit
    def both(x):
        ours = flows.rational_quadratic_spline(x, *knots)
        theirs = jax.vmap(spline.transform_and_log_det)(x)
        back = flows.rational_quadratic_spline(ours[0], *knots, inverse=True)
        theirs_back = jax.vmap(spline.inverse_and_log_det)(theirs[0])
        return ours, theirs, back, theirs_back

    ours, theirs, back, theirs_back = both(x)
    for a, b in ((ours, theirs), (back, theirs_back)):
        np.testing.assert_allclose(a[0], b[0], atol=EXACT_TOL_F64)
        np.testing.assert_allclose(a[1], b[1], atol=EXACT_TOL_F64)
    np.testing.assert_allclose(back[0], x, atol=EXACT_TOL_F64)


def test_spline_interpolates_its_knots_monotonically(key, x64):
    """Through every knot with the given derivative there (from jvp), increasing in
    between, the identity with derivative 1 outside."""
    x_knots, y_knots, derivatives = _random_knots(key)

    @jax.jit
    def evaluate(x):
        def spline(v):
            return flows.rational_quadratic_spline(v, x_knots, y_knots, derivatives)

        (y, log_derivative), (slope, _) = jax.jvp(spline, (x,), (jnp.ones_like(x),))
        return y, log_derivative, slope

    # The knots themselves (the last bin is closed on the right), then a fine grid.
    y, log_derivative, slope = evaluate(x_knots)
    np.testing.assert_allclose(y, y_knots, atol=EXACT_TOL_F64)
    np.testing.assert_allclose(slope, derivatives, rtol=1e-10)
    np.testing.assert_allclose(log_derivative, jnp.log(derivatives), rtol=1e-10)
    grid = jnp.linspace(-2 * BOUND, 2 * BOUND, 2001)
    y, log_derivative, slope = evaluate(grid)
    assert jnp.all(jnp.diff(y) > 0)
    np.testing.assert_allclose(jnp.exp(log_derivative), slope, rtol=1e-10)
    tails = jnp.abs(grid) > BOUND
    np.testing.assert_array_equal(y[tails], grid[tails])
    np.testing.assert_array_equal(log_derivative[tails], 0.0)


def test_spline_derivatives_against_finite_differences(key, x64):
    """Forward and reverse mode of both directions, with respect to the points and to
    the knots, against float64 central differences."""
    knots = _random_knots(key)
    x = jnp.array([-2.9, -1.3, -0.2, 0.4, 1.7, 2.6])

    for inverse in (False, True):
        spline = jax.jit(
            lambda *args, inverse=inverse: flows.rational_quadratic_spline(
                *args, inverse=inverse
            )
        )
        check_grads(spline, (x, *knots), order=1, modes=("fwd", "rev"), atol=GRAD_TOL)


def test_spline_is_finite_and_identity_at_the_edges(x64):
    """At the interval's ends and far outside, values and gradients stay finite."""
    knots = _random_knots(jax.random.key(3))
    edges = jnp.array([-1e6, -BOUND, BOUND, 1e6])

    @jax.jit
    def values_and_grads(x):
        def total(x, inverse):
            y, log_derivative = flows.rational_quadratic_spline(
                x, *knots, inverse=inverse
            )
            return jnp.sum(y) + jnp.sum(log_derivative), y

        return [jax.grad(total, has_aux=True)(x, inverse) for inverse in (0, 1)]

    for grad, y in values_and_grads(edges):
        assert jnp.all(jnp.isfinite(grad))
        np.testing.assert_allclose(y, edges, atol=EXACT_TOL_F64)


def test_traced_masks_give_the_concrete_masks_coupling(key):
    """A scan over masks (traced: splines on every entry, the kept ones restored by
    the mask) equals the chain of the same couplings with concrete masks (splines on
    the transformed entries only), conditional ones included."""
    dim, context_dim = 3, 2
    net = flows.mlp_conditioner(
        dim, (8,), outputs=flows.spline_outputs(BINS), context_dim=context_dim
    )
    masks = np.stack([flows.alternating_mask(dim, flip=flip) for flip in (0, 1)])
    make = lambda m: flows.spline_coupling(m, net, bins=BINS, bound=BOUND)  # noqa: E731
    scanned = flows.scan(make, jnp.asarray(masks))
    chained = flows.chain(make(masks[0]), make(masks[1]))
    assert scanned.conditional and chained.conditional
    k_params, k_x, k_c = jax.random.split(key, 3)
    x = 2.0 * jax.random.normal(k_x, (16, dim))
    context = jax.random.normal(k_c, (16, context_dim))

    @jax.jit
    def both(key):
        params = scanned.init(key)
        params = jax.tree.map(
            lambda p: p + 0.3 * jax.random.normal(key, p.shape), params
        )
        per_layer = tuple(jax.tree.map(lambda p, i=i: p[i], params) for i in range(2))
        return (
            scanned.forward(params, x, context),
            chained.forward(per_layer, x, context),
            scanned.inverse(params, x, context),
            chained.inverse(per_layer, x, context),
        )

    scan_fwd, chain_fwd, scan_inv, chain_inv = both(k_params)
    for a, b in ((scan_fwd, chain_fwd), (scan_inv, chain_inv)):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(scan_fwd[0] - x))) > 0.1  # not the identity


def test_spline_coupling_refuses_a_conditioner_of_the_wrong_size():
    net = flows.mlp_conditioner(2, (4,))  # 2 numbers per entry, an affine coupling's
    with pytest.raises(ValueError, match="needs a conditioner with outputs=11"):
        flows.spline_coupling(flows.half_mask(2), net, bins=4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bins": 0}, ValueError, "bins must be an integer >= 1"),
        ({"bins": 2.0}, TypeError, "bins must be an integer >= 1"),
        ({"bound": 0.0}, ValueError, "bound"),
    ],
)
def test_neural_spline_flow_refuses_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        flows.neural_spline_flow(2, **kwargs)
