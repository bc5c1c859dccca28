"""Flow invariants, parametrised over every bijection and whole flows, and the
scoring helpers.

For each case, in float64 and one compiled program: inverse(forward(x)) == x,
logdet_forward == -logdet_inverse at the image point, logdet == log|det jacfwd|,
finite NLL gradients; for 2-D cases the density integrates to one on a grid. Shapes
are tiny and fixed, so each case compiles once and quickly.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from chainlab import flows
from chainlab.data import digits, two_moons
from chainlab.flows import coupling

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
    # One normal draw for all leaves, cut into pieces: one random-number program per
    # leaf (a Glow has ~30) made most of these tests' compile time.
    leaves, tree = jax.tree.flatten(params)
    if not leaves:
        return params
    dtype = jnp.result_type(*leaves)
    noise = jax.random.normal(key, (sum(leaf.size for leaf in leaves),), dtype)
    ends = np.cumsum([leaf.size for leaf in leaves])
    noisy = [
        leaf + scale * piece.reshape(leaf.shape).astype(leaf.dtype)
        for leaf, piece in zip(leaves, jnp.split(noise, ends[:-1]), strict=True)
    ]
    return jax.tree.unflatten(tree, noisy)


def _mlp(dim):
    return flows.mlp_conditioner(dim, (8,), activation=jnp.tanh)


def _conv(channels):
    return flows.conv_conditioner(channels, 4)


def _bind(bijection, context):
    """The conditional ``bijection`` at one fixed context, as an unconditional one
    (the invariant checks below call ``forward(params, x)``)."""
    return flows.Bijection(
        bijection.init,
        lambda p, x: bijection.forward(p, x, context),
        lambda p, y: bijection.inverse(p, y, context),
        lambda p, x: bijection.initialize(p, x, context),
    )


CONTEXT = jnp.array([0.7, -1.2])
# Splines on [-SPLINE_BOUND, SPLINE_BOUND]: standard normal inputs reach both the
# bins and the identity tails.
SPLINE_BINS, SPLINE_BOUND = 4, 2.0


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


# name -> (constructor of the bijection, event shape, input kind). Covered elsewhere,
# so not repeated here: alternating and channel masks (the realnvp_alternating_logit
# and glow flows), actnorm on vectors (chain), reverse (a permutation), scan (realnvp's
# body, and test_scan_equals_chain_of_layers).
BIJECTIONS = {
    "coupling_half": (
        lambda: flows.affine_coupling(flows.half_mask(VECTOR_DIM), _mlp(VECTOR_DIM)),
        (VECTOR_DIM,),
        "normal",
    ),
    "coupling_checkerboard": (
        lambda: flows.affine_coupling(flows.checkerboard_mask(*IMAGE), _conv(IMAGE[2])),
        IMAGE,
        "normal",
    ),
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
    "autoregressive_spline_context": (
        lambda: _bind(
            flows.masked_autoregressive(
                VECTOR_DIM,
                hidden=(8,),
                transformer="spline",
                bins=SPLINE_BINS,
                bound=SPLINE_BOUND,
                context_dim=CONTEXT.size,
            ),
            CONTEXT,
        ),
        (VECTOR_DIM,),
        "normal",
    ),
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
    "glow_spline": (
        lambda: flows.glow(
            (2, 2, 1), levels=1, steps=1, hidden=4, transformer="spline", bins=4
        ),
        (2, 2, 1),
        "normal",
    ),
    "neural_spline_flow": (
        lambda: flows.neural_spline_flow(
            VECTOR_DIM, num_layers=3, hidden=(8,), bins=SPLINE_BINS, bound=SPLINE_BOUND
        ),
        (VECTOR_DIM,),
        "normal",
    ),
    "maf": (
        lambda: flows.maf(VECTOR_DIM, num_layers=2, hidden=(8,)),
        (VECTOR_DIM,),
        "normal",
    ),
}


def _inputs(key, shape, kind, n=3):
    if kind == "levels":
        return jax.random.uniform(key, (n, *shape), minval=0.0, maxval=LEVELS)
    return jax.random.normal(key, (n, *shape))


def _fresh(flow, key):
    """New parameters from the flow's own compiled ``init``, called on its own: the
    same flow in another test (or a doctest) finds it in the persistent cache."""
    return flow.init(jax.random.split(key, 3)[0])


def _params_and_inputs(thing, fresh, shape, kind, key, scale=PERTURB):
    """Initialised (ActNorm: on the inputs), perturbed params and an input batch."""
    _, k_perturb, k_x = jax.random.split(key, 3)
    x = _inputs(k_x, shape, kind)
    params = thing.initialize(fresh, x)
    return _perturb(params, k_perturb, scale), x


def _setup(case, key, scale=PERTURB):
    """The flow, perturbed params and an input batch."""
    make, shape, kind = case
    flow = make()
    setup = jax.jit(lambda f, k: _params_and_inputs(flow, f, shape, kind, k, scale))
    return (flow, *setup(_fresh(flow, key), key))


def _log_abs_det_jacobian(fn, params, x):
    """``log|det d fn(params, x_i) / d x_i|`` per event, from the dense Jacobian."""

    def flat(v):
        return fn(params, v.reshape(1, *x.shape[1:]))[0].reshape(-1)

    jac = jax.vmap(jax.jacfwd(flat))(x.reshape(x.shape[0], -1))
    return jnp.linalg.slogdet(jac)


ALL = {**BIJECTIONS, **FLOWS}


@pytest.mark.parametrize("name", sorted(ALL))
def test_bijection_invariants(name, key, x64):
    """In one compiled program: inverse(forward(x)) == x, the log-dets of the two
    directions cancel and equal log|det jacfwd|, and NLL gradients are finite."""
    make, shape, kind = ALL[name]
    thing = make()
    flow = thing if name in FLOWS else flows.transformed(thing, shape)

    @jax.jit
    def invariants(fresh, key):
        params, x = _params_and_inputs(thing, fresh, shape, kind, key)
        z, logdet_fwd = thing.forward(params, x)
        x_back, logdet_inv = thing.inverse(params, z)
        jac_fwd = _log_abs_det_jacobian(thing.forward, params, x)
        jac_inv = _log_abs_det_jacobian(thing.inverse, params, z)
        grads = jax.grad(lambda p: -jnp.mean(flow.log_prob(p, x)))(params)
        return params, x, z, x_back, logdet_fwd, logdet_inv, jac_fwd, jac_inv, grads

    results = invariants(_fresh(flow, key), key)
    params, x, z, x_back, logdet_fwd, logdet_inv, jac_fwd, jac_inv, grads = results
    assert z.size == x.size
    chex.assert_shape((logdet_fwd, logdet_inv), (x.shape[0],))
    chex.assert_trees_all_close(x_back, x, atol=EXACT_TOL_F64, rtol=EXACT_TOL_F64)
    chex.assert_trees_all_close(logdet_fwd, -logdet_inv, atol=EXACT_TOL_F64)
    (sign_fwd, from_jac_fwd), (sign_inv, from_jac_inv) = jac_fwd, jac_inv
    assert jnp.all(sign_fwd != 0) and jnp.all(sign_inv != 0)
    chex.assert_trees_all_close(logdet_fwd, from_jac_fwd, atol=EXACT_TOL_F64)
    chex.assert_trees_all_close(logdet_inv, from_jac_inv, atol=EXACT_TOL_F64)
    chex.assert_trees_all_equal_structs(grads, params)
    chex.assert_tree_all_finite(grads)


def test_check_grads_of_log_prob(key, x64):
    flow, params, x = _setup(FLOWS["realnvp"], key)
    log_prob = jax.jit(flow.log_prob)
    check_grads(lambda p: log_prob(p, x), (params,), order=1, modes=("rev",))
    check_grads(lambda v: log_prob(params, v), (x,), order=1, modes=("fwd",))


def _grid(lo, hi, points):
    axis = jnp.linspace(lo, hi, points)
    xx, yy = jnp.meshgrid(axis, axis, indexing="ij")
    return jnp.stack([xx.reshape(-1), yy.reshape(-1)], axis=1), (hi - lo) / (points - 1)


def _mass(flow, key, lo, hi, points):
    """Riemann sum of a perturbed flow's density on a square grid: one program."""

    @jax.jit
    def mass(fresh, key):
        params, _ = _params_and_inputs(
            flow, fresh, (2,), "normal", key, DENSITY_PERTURB
        )
        grid, step = _grid(lo, hi, points)
        return jnp.sum(jnp.exp(flow.log_prob(params, grid))) * step**2

    return float(mass(_fresh(flow, key), key))


# Planar flows whose density is integrated; the scan of couplings is realnvp's body.
PLANAR = {
    "coupling": lambda: flows.affine_coupling(flows.half_mask(2), _mlp(2)),
    "actnorm": lambda: flows.actnorm(2),
    "linear": lambda: flows.invertible_linear(2),
    "standardize": lambda: flows.standardize(
        jnp.array([0.5, -0.5]), jnp.array([1.5, 0.8])
    ),
    "realnvp": lambda: flows.realnvp(2, num_layers=4, hidden=(16,)),
    "neural_spline_flow": lambda: flows.neural_spline_flow(
        2, num_layers=2, hidden=(8,), bins=SPLINE_BINS, bound=SPLINE_BOUND
    ),
    "maf_spline_context": lambda: _bind(
        flows.masked_autoregressive(
            2,
            hidden=(8,),
            transformer="spline",
            bins=SPLINE_BINS,
            bound=SPLINE_BOUND,
            context_dim=CONTEXT.size,
        ),
        CONTEXT,
    ),
}


@pytest.mark.parametrize("name", sorted(PLANAR))
def test_planar_density_integrates_to_one(name, key, x64):
    flow = PLANAR[name]()
    if not isinstance(flow, flows.Flow):
        flow = flows.transformed(flow, (2,))
    # A small perturbation keeps the tails inside the +-14 box (spacing ~0.06).
    assert abs(_mass(flow, key, -14.0, 14.0, 481) - 1.0) < INTEGRAL_TOL


def test_logit_density_integrates_to_one_on_its_domain(key, x64):
    levels, alpha = 4.0, 0.05
    preprocess = flows.logit(levels=levels, alpha=alpha)
    flow = flows.realnvp(2, num_layers=2, hidden=(8,), preprocess=preprocess)
    # logit maps (-alpha K / (1 - 2 alpha), K (1 - alpha) / (1 - 2 alpha)) onto R.
    lo, hi = -alpha * levels / (1 - 2 * alpha), levels * (1 - alpha) / (1 - 2 * alpha)
    margin = 1e-9
    assert abs(_mass(flow, key, lo + margin, hi - margin, 801) - 1.0) < INTEGRAL_TOL


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_sample_shapes_and_density(name, key):
    make, shape, kind = FLOWS[name]
    flow = make()

    @jax.jit  # set-up and draw in one program
    def draw(fresh, key):
        params, _ = _params_and_inputs(flow, fresh, shape, kind, key)
        samples = flow.sample(params, jax.random.key(7), 6)
        return params, samples, flow.log_prob(params, samples)

    params, samples, log_prob = draw(_fresh(flow, key), key)
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


def test_softplus_log_scale_is_the_floored_softplus_and_zero_at_zero(x64):
    """log(softplus(r + c) + f), softplus(c) = 1 - f: the stable form agrees with the
    naive one in value and derivative (float64), is 0 at r = 0 to the last bit in
    float32, and stays finite where expm1 would overflow."""
    raw = jnp.array([-1e3, -20.0, -3.0, -0.5, 0.0, 0.7, 4.0, 29.0, 31.0, 200.0])
    shift = math.log(math.expm1(1.0 - coupling.SCALE_FLOOR))

    def naive(r):
        return jnp.log(jax.nn.softplus(r + shift) + coupling.SCALE_FLOOR)

    np.testing.assert_allclose(
        coupling.softplus_log_scale(raw), naive(raw), rtol=1e-12, atol=1e-12
    )
    slope = jax.vmap(jax.grad(coupling.softplus_log_scale))(raw)
    np.testing.assert_allclose(
        slope, jax.vmap(jax.grad(naive))(raw), rtol=1e-9, atol=1e-12
    )
    assert float(coupling.softplus_log_scale(jnp.zeros((), jnp.float32))) == 0.0
    extreme = coupling.softplus_log_scale(jnp.array([-1e30, 1e30], jnp.float32))
    assert float(extreme[0]) == pytest.approx(math.log(coupling.SCALE_FLOOR))
    assert bool(jnp.all(jnp.isfinite(extreme)))


def test_mlp_conditioner_initialisations(key):
    """uniform: weights and biases within +-1/sqrt(fan_in), spread over it; lecun:
    zero biases; both: a zero output layer."""
    uniform = flows.mlp_conditioner(2, (64,)).init(key)
    bound = 1 / math.sqrt(2)
    for leaf in (uniform[0]["w"], uniform[0]["b"]):
        assert float(jnp.max(jnp.abs(leaf))) <= bound
        assert float(jnp.max(jnp.abs(leaf))) > 0.8 * bound
    lecun = flows.mlp_conditioner(2, (64,), hidden_init="lecun").init(key)
    assert float(jnp.max(jnp.abs(lecun[0]["b"]))) == 0.0
    for params in (uniform, lecun):
        assert float(jnp.max(jnp.abs(params[-1]["w"]))) == 0.0
    with pytest.raises(
        ValueError, match="hidden_init must be one of 'uniform', 'lecun'"
    ):
        flows.mlp_conditioner(2, (8,), hidden_init="normal")


def test_affine_coupling_refuses_an_unknown_scale():
    with pytest.raises(ValueError, match="scale must be one of 'softplus', 'tanh'"):
        flows.affine_coupling(flows.half_mask(2), _mlp(2), scale="exp")


def test_scan_equals_chain_of_layers(key, x64):
    masks = jnp.stack([flows.half_mask(4), flows.alternating_mask(4, flip=True)])
    make = lambda m: flows.affine_coupling(m, _mlp(4))  # noqa: E731
    stacked = flows.scan(make, masks)
    unrolled_scan = flows.scan(make, masks, unroll=True)
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
            unrolled_scan.forward(params, x),
        )

    scan_fwd, chain_fwd, scan_inv, chain_inv, unrolled_fwd = both(key, x)
    pairs = ((scan_fwd, chain_fwd), (scan_inv, chain_inv), (unrolled_fwd, chain_fwd))
    for (a, la), (b, lb) in pairs:
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
    def initialized(fresh, x):
        params = flow.initialize(fresh, x)
        return params, flow.forward(params, x)[0]

    fresh = _fresh(flow, key)  # the compiled init of test_sample_shapes_and_density
    params, z = initialized(fresh, x)
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


# --- scoring and training aids: pathways, bits/dim, the two-moons floor, averaging


def test_gradient_pathways_sum_to_the_log_likelihood_gradient(key, x64):
    flow = flows.realnvp(2, num_layers=2, hidden=(8,))
    params = _perturb(flow.init(key), jax.random.fold_in(key, 2), scale=0.1)
    x = jax.random.normal(jax.random.fold_in(key, 1), (16, 2))

    # Compiled once and called at every evaluation of a training run: new parameter
    # values must not retrace it.
    @jax.jit
    @chex.assert_max_traces(n=1)
    def pieces(params):
        base, logdet = flows.gradient_pathways(flow, params, x)
        total = jax.grad(lambda p: jnp.mean(flow.log_prob(p, x)))(params)
        per_layer = flows.layerwise_norms_and_cosine(base, logdet)
        return base, logdet, total, per_layer

    pieces(jax.tree.map(jnp.zeros_like, params))
    base, logdet, total, (base_norm, logdet_norm, cosine) = pieces(params)
    chex.assert_trees_all_close(jax.tree.map(jnp.add, base, logdet), total, atol=1e-12)
    # Both pathways carry gradient to every parameter array of every coupling.
    for leaf in (*jax.tree.leaves(base), *jax.tree.leaves(logdet)):
        assert float(jnp.abs(leaf).max()) > 0
    chex.assert_shape((base_norm, logdet_norm, cosine), (2,))
    assert jnp.all((cosine >= -1.0) & (cosine <= 1.0))


def test_layerwise_norms_and_cosine_by_hand():
    a = {"w": jnp.array([[3.0, 4.0], [1.0, 0.0]]), "b": jnp.zeros((2, 1))}
    b = {"w": jnp.array([[4.0, -3.0], [-2.0, 0.0]]), "b": jnp.ones((2, 1))}
    norm_a, norm_b, cosine = flows.layerwise_norms_and_cosine(a, b)
    chex.assert_trees_all_close(norm_a, jnp.array([5.0, 1.0]))
    chex.assert_trees_all_close(norm_b, jnp.sqrt(jnp.array([26.0, 5.0])))
    chex.assert_trees_all_close(cosine, jnp.array([0.0, -2.0 / math.sqrt(5.0)]))


def test_bits_per_dim_is_nats_over_dimensions_and_ln2():
    log_prob = jnp.array([-10.0, -30.0])
    expected = 20.0 / (4 * math.log(2))
    np.testing.assert_allclose(flows.bits_per_dim(log_prob, 4), expected, rtol=1e-6)


def test_two_moons_generating_density_matches_monte_carlo_entropy():
    # On fresh draws the mean NLL under the true density estimates its entropy;
    # the train and test sets must agree to sampling error.
    data = two_moons(train_size=1000, test_size=1000)
    a = -np.mean(flows.two_moons_log_prob(data.x_test, num_angles=1000))
    b = -np.mean(flows.two_moons_log_prob(data.x_train, num_angles=1000))
    assert 0.1 < a < 0.45
    assert abs(a - b) < 0.1  # ~3 standard errors of a 1000-point mean


def test_two_moons_density_integrates_to_one():
    axis = np.linspace(-1.5, 2.5, 121)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(flows.two_moons_log_prob(grid, num_angles=100))
    assert abs(density.sum() * (axis[1] - axis[0]) ** 2 - 1.0) < INTEGRAL_TOL


def test_seeded_dequantization_follows_the_digits_protocol():
    x_test = digits().x_test
    images = x_test.reshape(-1, 8, 8)
    y = flows.seeded_dequantization(images, seed=1)
    expected = x_test + np.random.default_rng(1).uniform(size=x_test.shape)
    np.testing.assert_array_equal(y.reshape(-1, 64), expected.astype(np.float32))
    assert np.all((y >= images) & (y < images + 1))


def test_nearest_distances_finds_exact_copies():
    refs = np.random.default_rng(0).integers(0, 17, size=(30, 8, 8, 1)).astype(float)
    distances, index = flows.nearest_distances(refs[[4, 17]], refs)
    np.testing.assert_array_equal(index, [4, 17])
    np.testing.assert_allclose(distances, 0.0, atol=1e-6)


def test_with_average_tracks_the_exponential_moving_average():
    decay = 0.9
    optimizer = flows.with_average(optax.sgd(0.5), decay=decay)
    params = {"live": jnp.array([1.0, -2.0]), "average": jnp.array([1.0, -2.0])}
    state = optimizer.init(params)
    expected = np.array([1.0, -2.0])
    for step in range(5):
        grads = {"live": jnp.array([1.0, 2.0]) * (step + 1), "average": jnp.zeros(2)}
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        expected = decay * expected + (1 - decay) * np.asarray(params["live"])
    np.testing.assert_allclose(params["live"], [1.0 - 7.5, -2.0 - 15.0], rtol=1e-6)
    np.testing.assert_allclose(params["average"], expected, rtol=1e-6)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
