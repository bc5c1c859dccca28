"""Flow invariants, parametrised over every bijection and whole flows.

For each case: inverse(forward(x)) == x, logdet_forward == -logdet_inverse at the
image point, logdet == log|det jacfwd| in float64, finite NLL gradients; for 2-D cases
the density integrates to one on a grid.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab import flows

# float32 round trips through a few layers lose a few ulps per layer.
ROUNDTRIP_TOL_F32 = 1e-4
# float64 identities (Jacobian log-dets, scan vs chain) hold to rounding error.
EXACT_TOL_F64 = 1e-9
# Riemann sum of a smooth density over a 2-D grid of spacing h: error O(h^2) plus the
# tail mass outside the box, both below this for the grids used.
INTEGRAL_TOL = 5e-3
# Random perturbation of the parameters, so no layer is the identity.
PERTURB = 0.3
# Smaller for the density integrals, so the tails stay inside the grid's box.
DENSITY_PERTURB = 0.1

VECTOR_DIM = 3
IMAGE = (4, 4, 2)
LEVELS = 17.0


def _perturb(params, key, scale=PERTURB):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    noisy = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=False)
    ]
    return jax.tree.unflatten(tree, noisy)


def _mlp(dim):
    return flows.mlp_conditioner(dim, (8,), activation=jnp.tanh)


def _conv(channels):
    return flows.conv_conditioner(channels, 4)


def _coupling_stack(dim):
    masks = jnp.stack([flows.half_mask(dim), flows.half_mask(dim, flip=True)])
    return flows.scan(lambda m: flows.affine_coupling(m, _mlp(dim)), masks)


def _inner_scale():
    # shape-preserving bijection on (2, 2, 1) images: squeeze, coupling, unsqueeze
    return flows.chain(
        flows.squeeze(),
        flows.affine_coupling(flows.channel_mask(1, 1, 4), _conv(4)),
        flows.unsqueeze(),
    )


# name -> (constructor of the bijection, event shape, input kind)
BIJECTIONS = {
    "coupling_half": (
        lambda: flows.affine_coupling(flows.half_mask(VECTOR_DIM), _mlp(VECTOR_DIM)),
        (VECTOR_DIM,),
        "normal",
    ),
    "coupling_alternating": (
        lambda: flows.affine_coupling(
            flows.alternating_mask(VECTOR_DIM, flip=True), _mlp(VECTOR_DIM)
        ),
        (VECTOR_DIM,),
        "normal",
    ),
    "coupling_checkerboard": (
        lambda: flows.affine_coupling(flows.checkerboard_mask(*IMAGE), _conv(IMAGE[2])),
        IMAGE,
        "normal",
    ),
    "coupling_channel": (
        lambda: flows.affine_coupling(flows.channel_mask(*IMAGE), _conv(IMAGE[2])),
        IMAGE,
        "normal",
    ),
    "actnorm_vector": (lambda: flows.actnorm(VECTOR_DIM), (VECTOR_DIM,), "normal"),
    "actnorm_image": (lambda: flows.actnorm(IMAGE[2]), IMAGE, "normal"),
    "linear_vector": (
        lambda: flows.invertible_linear(VECTOR_DIM, permutation=jnp.array([1, 2, 0])),
        (VECTOR_DIM,),
        "normal",
    ),
    "conv1x1_image": (lambda: flows.invertible_linear(IMAGE[2]), IMAGE, "normal"),
    "permutation": (
        lambda: flows.permutation(jnp.array([2, 0, 1])),
        (VECTOR_DIM,),
        "normal",
    ),
    "reverse": (lambda: flows.reverse(VECTOR_DIM), (VECTOR_DIM,), "normal"),
    "squeeze": (flows.squeeze, IMAGE, "normal"),
    "unsqueeze": (flows.unsqueeze, (2, 2, 8), "normal"),
    "reshape": (lambda: flows.reshape(IMAGE, (32,)), IMAGE, "normal"),
    "factor_out": (lambda: flows.factor_out(_inner_scale()), (2, 2, 2), "normal"),
    "standardize": (
        lambda: flows.standardize(
            jnp.array([1.0, -2.0, 0.5]), jnp.array([2.0, 0.5, 3.0])
        ),
        (VECTOR_DIM,),
        "normal",
    ),
    "logit": (lambda: flows.logit(levels=LEVELS, alpha=0.05), (VECTOR_DIM,), "levels"),
    "chain": (
        lambda: flows.chain(
            flows.actnorm(VECTOR_DIM),
            flows.invertible_linear(VECTOR_DIM),
            flows.affine_coupling(flows.half_mask(VECTOR_DIM), _mlp(VECTOR_DIM)),
        ),
        (VECTOR_DIM,),
        "normal",
    ),
    "scan": (lambda: _coupling_stack(VECTOR_DIM), (VECTOR_DIM,), "normal"),
}

FLOWS = {
    "realnvp": (
        lambda: flows.realnvp(VECTOR_DIM, num_layers=3, hidden=(8, 8)),
        (VECTOR_DIM,),
        "normal",
    ),
    "realnvp_alternating_logit": (
        lambda: flows.realnvp(
            VECTOR_DIM,
            num_layers=2,
            hidden=(8,),
            mask="alternating",
            preprocess=flows.logit(levels=LEVELS),
        ),
        (VECTOR_DIM,),
        "levels",
    ),
    "glow": (
        lambda: flows.glow((4, 4, 1), levels=2, steps=1, hidden=4),
        (4, 4, 1),
        "normal",
    ),
}


def _inputs(key, shape, kind, n=5):
    if kind == "levels":
        return jax.random.uniform(key, (n, *shape), minval=0.0, maxval=LEVELS)
    return jax.random.normal(key, (n, *shape))


def _setup(case, key, scale=PERTURB):
    """The bijection (or flow), perturbed params and an input batch."""
    make, shape, kind = case
    thing = make()

    @jax.jit
    def params_and_inputs(key):
        k_init, k_perturb, k_x = jax.random.split(key, 3)
        x = _inputs(k_x, shape, kind)
        params = thing.initialize(thing.init(k_init), x)
        return _perturb(params, k_perturb, scale), x

    return (thing, *params_and_inputs(key))


ALL = {**BIJECTIONS, **FLOWS}


@pytest.mark.parametrize("name", sorted(ALL))
def test_inverse_undoes_forward_with_finite_nll_gradients(name, key):
    thing, params, x = _setup(ALL[name], key)
    flow = thing if name in FLOWS else flows.transformed(thing, ALL[name][1])

    @jax.jit
    def roundtrip(params, x):
        z, logdet_fwd = thing.forward(params, x)
        x_back, logdet_inv = thing.inverse(params, z)
        grads = jax.grad(lambda p: -jnp.mean(flow.log_prob(p, x)))(params)
        return z, logdet_fwd, x_back, logdet_inv, grads

    z, logdet_fwd, x_back, logdet_inv, grads = roundtrip(params, x)
    assert z.size == x.size
    assert logdet_fwd.shape == logdet_inv.shape == (x.shape[0],)
    np.testing.assert_allclose(
        x_back, x, atol=ROUNDTRIP_TOL_F32, rtol=ROUNDTRIP_TOL_F32
    )
    np.testing.assert_allclose(
        logdet_fwd, -logdet_inv, atol=ROUNDTRIP_TOL_F32, rtol=ROUNDTRIP_TOL_F32
    )
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for leaf in jax.tree.leaves(grads):
        assert jnp.all(jnp.isfinite(leaf))


@pytest.mark.parametrize("name", sorted(ALL))
def test_logdet_matches_jacobian(name, key, x64):
    thing, params, x = _setup(ALL[name], key)

    @jax.jit
    def logdets(params, x):
        def flat(fn, v, shape):
            return fn(params, v.reshape(1, *shape))[0].reshape(-1)

        z, logdet_fwd = thing.forward(params, x)
        _, logdet_inv = thing.inverse(params, z)
        flat_x = x.reshape(x.shape[0], -1)
        flat_z = z.reshape(z.shape[0], -1)
        jac_fwd = jax.vmap(jax.jacfwd(lambda v: flat(thing.forward, v, x.shape[1:])))
        jac_inv = jax.vmap(jax.jacfwd(lambda v: flat(thing.inverse, v, z.shape[1:])))
        sign_fwd, from_jac_fwd = jnp.linalg.slogdet(jac_fwd(flat_x))
        sign_inv, from_jac_inv = jnp.linalg.slogdet(jac_inv(flat_z))
        return logdet_fwd, from_jac_fwd, sign_fwd, logdet_inv, from_jac_inv, sign_inv

    logdet_fwd, from_jac_fwd, sign_fwd, logdet_inv, from_jac_inv, sign_inv = logdets(
        params, x[:2]
    )
    assert jnp.all(sign_fwd != 0) and jnp.all(sign_inv != 0)
    np.testing.assert_allclose(logdet_fwd, from_jac_fwd, atol=EXACT_TOL_F64)
    np.testing.assert_allclose(logdet_inv, from_jac_inv, atol=EXACT_TOL_F64)


def test_check_grads_of_log_prob(key, x64):
    flow, params, x = _setup(FLOWS["realnvp"], key)
    log_prob = jax.jit(flow.log_prob)
    check_grads(lambda p: log_prob(p, x), (params,), order=1, modes=("rev",))
    check_grads(lambda v: log_prob(params, v), (x,), order=1, modes=("fwd",))


def _grid_mass(log_prob, lo, hi, points):
    axis = jnp.linspace(lo, hi, points)
    xx, yy = jnp.meshgrid(axis, axis, indexing="ij")
    grid = jnp.stack([xx.reshape(-1), yy.reshape(-1)], axis=1)
    step = (hi - lo) / (points - 1)
    return float(jnp.sum(jnp.exp(jax.jit(log_prob)(grid))) * step**2)


PLANAR = {
    "coupling": lambda: flows.affine_coupling(flows.half_mask(2), _mlp(2)),
    "actnorm": lambda: flows.actnorm(2),
    "linear": lambda: flows.invertible_linear(2),
    "standardize": lambda: flows.standardize(
        jnp.array([0.5, -0.5]), jnp.array([1.5, 0.8])
    ),
    "scan": lambda: _coupling_stack(2),
}


@pytest.mark.parametrize("name", [*sorted(PLANAR), "realnvp"])
def test_planar_density_integrates_to_one(name, key, x64):
    if name == "realnvp":
        flow = flows.realnvp(2, num_layers=4, hidden=(16,))
    else:
        flow = flows.transformed(PLANAR[name](), (2,))
    # A small perturbation keeps the tails inside the +-9 box.
    _, params, _ = _setup((lambda: flow, (2,), "normal"), key, scale=DENSITY_PERTURB)
    mass = _grid_mass(lambda g: flow.log_prob(params, g), -9.0, 9.0, 401)
    assert abs(mass - 1.0) < INTEGRAL_TOL


def test_logit_density_integrates_to_one_on_its_domain(key, x64):
    levels, alpha = 4.0, 0.05
    preprocess = flows.logit(levels=levels, alpha=alpha)
    flow = flows.realnvp(2, num_layers=2, hidden=(8,), preprocess=preprocess)
    _, params, _ = _setup((lambda: flow, (2,), "normal"), key, scale=DENSITY_PERTURB)
    # logit maps (-alpha K / (1 - 2 alpha), K (1 - alpha) / (1 - 2 alpha)) onto R.
    lo, hi = -alpha * levels / (1 - 2 * alpha), levels * (1 - alpha) / (1 - 2 * alpha)
    margin = 1e-9
    mass = _grid_mass(lambda g: flow.log_prob(params, g), lo + margin, hi - margin, 801)
    assert abs(mass - 1.0) < INTEGRAL_TOL


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_sample_shapes_and_density(name, key):
    _, shape, kind = FLOWS[name]
    flow, params, _ = _setup(FLOWS[name], key)

    @jax.jit
    def draw(params, key):
        samples = flow.sample(params, key, 6)
        return samples, flow.log_prob(params, samples)

    samples, log_prob = draw(params, jax.random.key(7))
    # params hold only trainable floating-point arrays; structure lives in the flow
    assert all(jnp.issubdtype(p.dtype, jnp.floating) for p in jax.tree.leaves(params))
    assert samples.shape == (6, *shape)
    assert samples.dtype == jnp.float32
    assert jnp.all(jnp.isfinite(log_prob))
    if kind == "levels":  # inside logit's domain, a little wider than [0, LEVELS)
        assert jnp.all((samples > -LEVELS) & (samples < 2 * LEVELS))


def test_new_realnvp_is_the_identity(key):
    flow = flows.realnvp(4, num_layers=2, hidden=(8,))
    x = jax.random.normal(key, (7, 4))

    @jax.jit
    def fresh(key, x):
        params = flow.init(key)
        return (*flow.forward(params, x), flow.log_prob(params, x))

    z, logdet, log_prob = fresh(key, x)
    np.testing.assert_array_equal(z, x)
    np.testing.assert_array_equal(logdet, jnp.zeros(7))
    expected = -0.5 * jnp.sum(x**2, axis=1) - 2 * math.log(2 * math.pi)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-6)


def test_scan_equals_chain_of_layers(key, x64):
    masks = jnp.stack([flows.half_mask(4), flows.alternating_mask(4, flip=True)])
    make = lambda m: flows.affine_coupling(m, _mlp(4))  # noqa: E731
    stacked = flows.scan(make, masks)
    unrolled = flows.chain(make(masks[0]), make(masks[1]))
    x = jax.random.normal(key, (5, 4))

    @jax.jit
    def both(key, x):
        params = _perturb(stacked.init(key), jax.random.fold_in(key, 1))
        per_layer = tuple(jax.tree.map(lambda p, i=i: p[i], params) for i in range(2))
        return (
            stacked.forward(params, x),
            unrolled.forward(per_layer, x),
            stacked.inverse(params, x),
            unrolled.inverse(per_layer, x),
        )

    scan_fwd, chain_fwd, scan_inv, chain_inv = both(key, x)
    for (a, la), (b, lb) in ((scan_fwd, chain_fwd), (scan_inv, chain_inv)):
        np.testing.assert_allclose(a, b, atol=EXACT_TOL_F64)
        np.testing.assert_allclose(la, lb, atol=EXACT_TOL_F64)


def test_actnorm_initialization_standardizes(key):
    norm = flows.actnorm(IMAGE[2])
    x = 3.0 + 2.0 * jax.random.normal(key, (16, *IMAGE))
    params = norm.initialize(norm.init(key), x)
    y, _ = norm.forward(params, x)
    np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, atol=1e-4)


def test_glow_initialize_runs_actnorm_through_the_scales(key):
    flow = flows.glow((4, 4, 1), levels=2, steps=1, hidden=4)
    x = 5.0 + 3.0 * jax.random.normal(key, (32, 4, 4, 1))

    @jax.jit
    def initialized(key, x):
        fresh = flow.init(key)
        params = flow.initialize(fresh, x)
        return fresh, params, flow.forward(params, x)[0]

    fresh, params, z = initialized(key, x)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), fresh, params)
    assert sum(jax.tree.leaves(changed)) == 4  # loc and log_scale at both scales
    assert abs(float(jnp.mean(z))) < 0.5


def test_logit_logdet_closed_form():
    alpha, levels = 0.05, 17.0
    y = jnp.array([[0.0, 8.5, 16.99]])
    z, logdet = flows.logit(levels=levels, alpha=alpha).forward({}, y)
    p = alpha + (1 - 2 * alpha) * np.asarray(y) / levels
    expected = np.sum(np.log((1 - 2 * alpha) / levels) - np.log(p) - np.log1p(-p))
    np.testing.assert_allclose(z, np.log(p / (1 - p)), rtol=1e-5)
    np.testing.assert_allclose(logdet, [expected], rtol=1e-5)


def test_dequantize_lies_in_the_unit_cell(key):
    x = jnp.tile(jnp.arange(17.0)[None, :], (50, 1))
    y = flows.dequantize(key, x)
    assert jnp.all((y >= x) & (y < x + 1))
    assert 0.4 < float(jnp.mean(y - x)) < 0.6


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: flows.realnvp(1), "dim >= 2"),
        (lambda: flows.realnvp(2, mask="diagonal"), "mask must be one of"),
        (lambda: flows.glow((6, 6, 1), levels=2), "divisible by"),
        (lambda: flows.glow((8, 8), levels=1), "height, width, channels"),
        (lambda: flows.logit(levels=17.0, alpha=0.5), "alpha"),
        (lambda: flows.standardize(jnp.zeros(2), jnp.array([1.0, 0.0])), "positive"),
        (lambda: flows.invertible_linear(3, permutation=jnp.arange(2)), "shape"),
        (lambda: flows.reshape((2, 2), (5,)), "sizes differ"),
        (lambda: flows.half_mask(1), "dim >= 2"),
    ],
)
def test_bad_construction_is_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_input_shape_is_refused(key):
    flow = flows.realnvp(2, num_layers=2, hidden=(4,))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        flow.log_prob({}, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        flow.log_prob({}, jnp.zeros(2))
    with pytest.raises(ValueError, match="even h and w"):
        flows.squeeze().forward({}, jnp.zeros((1, 3, 4, 1)))
    with pytest.raises(TypeError, match="integer"):
        flows.permutation(jnp.array([0.0, 1.0]))


def test_flow_composes_with_vmap_and_jacrev(key):
    flow, params, x = _setup(FLOWS["realnvp"], key)

    @jax.jit
    def transforms(params, x):
        batched = flow.log_prob(params, x)
        per_point = jax.vmap(lambda v: flow.log_prob(params, v[None])[0])(x)
        score = jax.jacrev(lambda v: flow.log_prob(params, v[None])[0])(x[0])
        return batched, per_point, score

    batched, per_point, score = transforms(params, x)
    np.testing.assert_allclose(per_point, batched, rtol=1e-5)
    assert score.shape == (VECTOR_DIM,)
    assert jnp.all(jnp.isfinite(score))


def test_flow_init_is_jitted_and_draws_what_the_layers_draw(key):
    bijection = _coupling_stack(VECTOR_DIM)
    flow = flows.transformed(bijection, (VECTOR_DIM,))
    jitted, eager = flow.init(key), bijection.init(key)
    assert hasattr(flow.init, "lower")  # one compiled program for every layer
    jax.tree.map(np.testing.assert_array_equal, jitted, eager)
