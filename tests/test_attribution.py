"""Tests for chainlab.attribution: quadrature rules, completeness, baselines, paths."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab import attribution as attr
from chainlab.models import MLP

# Exact rules in float64 leave only rounding: a few hundred ulps of the O(1) values.
EXACT64 = 1e-12
# The same identities in float32: rounding of ~50 summed terms.
EXACT32 = 1e-5
# Completeness of 50-node Gauss-Legendre on a smooth tanh network in float64: the
# quadrature error is far below it (Gauss-Legendre converges exponentially for an
# analytic integrand), so the bound is rounding plus a wide margin.
COMPLETENESS64 = 1e-6
# Re-ordered float32 sums (chunked vs unchunked, vmap vs loop, jit vs eager).
REORDER32 = 1e-5

QUADRATURE = {m: [1, 2, 3, 7, 50] for m in attr.METHODS}
QUADRATURE["riemann_trapezoid"] = [2, 3, 7, 50]


def _captum_nodes(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Captum's formulas, transcribed from approximation_methods.py, for comparison."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (1 + nodes), 0.5 * weights
    deltas = np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        deltas[[0, -1]] /= 2
        return np.linspace(0, 1, n), deltas
    alphas = {
        "riemann_left": np.linspace(0, 1 - 1 / n, n),
        "riemann_middle": np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n),
        "riemann_right": np.linspace(1 / n, 1, n),
    }[method]
    return alphas, deltas


def _network(key, dims=(5, 16, 16, 3)):
    """A smooth tanh MLP ``(dims[0],) -> (dims[-1],)`` and its parameters."""
    model = MLP(dims[1:])
    params = model.init(key, jnp.zeros(dims[0]))
    return model, params


@pytest.mark.parametrize("method", attr.METHODS)
def test_quadrature_nodes_match_captum(method):
    for n in QUADRATURE[method]:
        alphas, weights = attr.quadrature_rule(method, n)
        assert alphas.shape == weights.shape == (n,)
        assert np.all((alphas >= 0) & (alphas <= 1))
        np.testing.assert_allclose(weights.sum(), 1.0, rtol=EXACT64)
        if n == 1 and method != "gausslegendre":
            continue  # Captum refuses one node for its Riemann rules
        captum_alphas, captum_weights = _captum_nodes(method, n)
        np.testing.assert_allclose(alphas, captum_alphas, rtol=0, atol=EXACT64)
        if method == "riemann_trapezoid":
            # Captum's weights are ours scaled by (n - 1) / n: they sum to (n - 1) / n.
            np.testing.assert_allclose(captum_weights, weights * (n - 1) / n)
            np.testing.assert_allclose(captum_weights.sum(), (n - 1) / n)
        else:
            np.testing.assert_allclose(weights, captum_weights, atol=EXACT64)


def test_single_node_riemann_rules():
    for method, node in [
        ("riemann_left", 0.0),
        ("riemann_middle", 0.5),
        ("riemann_right", 1.0),
        ("gausslegendre", 0.5),
    ]:
        alphas, weights = attr.quadrature_rule(method, 1)
        assert alphas.tolist() == [node] and weights.tolist() == [1.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m", [1, 2, 5, 20])
def test_known_answers_product(m, dtype, request):
    """F(x) = x1 x2 from 0: exact IG_i = x1 x2 / 2; left (m-1)/m, right (m+1)/m."""
    if dtype == "float64":
        request.getfixturevalue("x64")
    tol = EXACT64 if dtype == "float64" else EXACT32
    x = jnp.array([2.0, -3.0], dtype)
    exact = jnp.full(2, 2.0 * -3.0 / 2, dtype)

    def f(z):
        return z[0] * z[1]

    expected = {
        "riemann_left": exact * (m - 1) / m,
        "riemann_right": exact * (m + 1) / m,
        "riemann_middle": exact,
        "gausslegendre": exact,
    }
    if m >= 2:
        expected["riemann_trapezoid"] = exact

    @jax.jit
    def every_rule(x):
        return {
            method: attr.integrated_gradients(f, x, steps=m, method=method)
            for method in expected
        }

    for method, got in every_rule(x).items():
        assert got.dtype == jnp.dtype(dtype)
        np.testing.assert_allclose(
            got, expected[method], rtol=tol, atol=tol, err_msg=method
        )


def test_gauss_legendre_is_exact_for_polynomials(x64):
    """n-point Gauss-Legendre integrates degree 2n - 1 exactly: F = x1^3 x2^3 (n=3)."""
    x = jnp.array([1.5, -0.7])

    def f(z):
        return (z[0] * z[1]) ** 3

    ig = attr.integrated_gradients(f, x, steps=3)
    # grad along the path: 3 a^5 (x1 x2)^3 / x_i, times x_i, integrated: (x1 x2)^3 / 2.
    np.testing.assert_allclose(ig, jnp.full(2, f(x) / 2), rtol=EXACT64)
    low = attr.integrated_gradients(f, x, steps=2)  # degree 5 > 2*2 - 1
    assert not np.allclose(low, ig, rtol=1e-6)


def test_completeness_float64_smooth_network(key, x64):
    model, params = _network(key)
    x = jax.random.normal(jax.random.key(1), (5,))
    baseline = jax.random.normal(jax.random.key(2), (5,))

    @jax.jit
    def rel_error(label):
        def f(z):
            return model.apply(params, z)[label]

        ig = attr.integrated_gradients(f, x, baseline=baseline, steps=50)
        assert ig.dtype == jnp.float64
        return attr.completeness_delta(f, x, ig, baseline=baseline, relative=True)

    for label in range(3):
        assert float(rel_error(label)) < COMPLETENESS64


def test_completeness_converges_in_steps(key, x64):
    """Orders: left/right O(1/n), middle/trapezoid O(1/n^2), Gauss-Legendre: less."""
    model, params = _network(key)
    x = 2.0 * jax.random.normal(jax.random.key(1), (5,))

    def f(z):
        return model.apply(params, z)[0]

    @jax.jit
    def errors(x):
        out = {}
        for method, n in [(m, n) for m in attr.METHODS for n in (20, 200, 400)]:
            ig = attr.integrated_gradients(f, x, steps=n, method=method)
            out[method, n] = attr.completeness_delta(f, x, ig, relative=True)
        return out

    table = errors(x)

    def err(method, n):
        return float(table[method, n])

    for method, order in [
        ("riemann_left", 1),
        ("riemann_right", 1),
        ("riemann_middle", 2),
        ("riemann_trapezoid", 2),
    ]:
        ratio = err(method, 200) / err(method, 400)
        assert 2**order * 0.8 < ratio < 2**order * 1.25, (method, ratio)
    assert err("gausslegendre", 20) < 1e-3 * err("riemann_middle", 20)


def test_vmap_over_batch_equals_loop(key):
    model, params = _network(key)
    xs = jax.random.normal(jax.random.key(1), (4, 5))
    labels = jnp.array([0, 2, 1, 2])

    def ig(x, y):
        return attr.integrated_gradients(lambda z: model.apply(params, z)[y], x)

    batched = jax.jit(jax.vmap(ig))(xs, labels)
    one = jax.jit(ig)
    looped = jnp.stack([one(x, y) for x, y in zip(xs, labels, strict=True)])
    np.testing.assert_allclose(batched, looped, rtol=REORDER32, atol=REORDER32)


def test_chunked_equals_unchunked(key):
    # Chunking only regroups the nodes of a rule: two rules with unequal weights and
    # chunk sizes that pad (5), divide exactly (1) and cover the whole path (23).
    model, params = _network(key)
    x = jax.random.normal(jax.random.key(1), (5,))

    def f(z):
        return model.apply(params, z)[1]

    for method in ("riemann_trapezoid", "gausslegendre"):
        whole = attr.integrated_gradients(f, x, steps=23, method=method)
        for chunk_size in [1, 5, 23]:
            chunked = attr.integrated_gradients(
                f, x, steps=23, method=method, chunk_size=chunk_size
            )
            np.testing.assert_allclose(chunked, whole, rtol=REORDER32, atol=REORDER32)


def test_chunking_bounds_the_vmapped_batch():
    """With chunk_size, the gradient runs on chunk_size points at a time in a scan."""

    def f(z):
        return jnp.sum(jnp.sin(z))

    def jaxpr(chunk_size):
        return str(
            jax.make_jaxpr(
                lambda x: attr.integrated_gradients(
                    f, x, steps=40, chunk_size=chunk_size
                )
            )(jnp.ones(3))
        )

    chunked, whole = jaxpr(8), jaxpr(None)
    assert "scan" in chunked and "f32[8,3]" in chunked and "f32[40,3]" not in chunked
    assert "scan" not in whole and "f32[40,3]" in whole


def test_jit_equals_eager_and_baseline_user_array(key):
    model, params = _network(key)
    x = jax.random.normal(jax.random.key(1), (5,))
    baseline = jnp.full(5, 0.3)

    def f(z):
        return model.apply(params, z)[0]

    def run(x, b):
        return attr.integrated_gradients(f, x, baseline=b, method="riemann_middle")

    eager = run(x, baseline)
    np.testing.assert_allclose(jax.jit(run)(x, baseline), eager, rtol=REORDER32)
    rel = attr.completeness_delta(f, x, eager, baseline=baseline, relative=True)
    assert float(rel) < 1e-3
    # Baseline equal to the input: nothing moves, nothing is attributed.
    np.testing.assert_array_equal(
        attr.integrated_gradients(f, x, baseline=x), jnp.zeros(5)
    )


def test_default_baseline_is_zeros(key):
    def f(z):
        return jnp.sum(jnp.tanh(z) ** 2)

    x = jax.random.normal(key, (2, 3))
    np.testing.assert_array_equal(
        attr.integrated_gradients(f, x),
        attr.integrated_gradients(f, x, baseline=jnp.zeros(x.shape)),
    )


def test_differentiable_through_attributions(x64):
    """IG composes with grad / jvp (attribution priors differentiate through it)."""

    def f(z):
        return jnp.sum(jnp.sin(z) * z[::-1])

    def total(x):
        return attr.integrated_gradients(f, x, steps=8, chunk_size=3)

    check_grads(total, (jnp.array([0.3, -1.2, 0.8]),), order=1, modes=("fwd", "rev"))


def test_flax_module_inside_a_module(key):
    """IG of a Flax module's class logit, called from inside another module."""

    class Explained(nn.Module):
        @nn.compact
        def __call__(self, x):
            net = MLP((8, 3), name="net")  # reached by its explicit name
            net(x)  # create the parameters
            return attr.integrated_gradients(lambda z: net(z)[2], x, steps=16)

    x = jax.random.normal(jax.random.key(1), (4,))
    params = Explained().init(key, x)
    ig = Explained().apply(params, x)
    inner = {"params": params["params"]["net"]}

    def logit(z):
        return MLP((8, 3)).apply(inner, z)[2]

    np.testing.assert_allclose(
        ig, attr.integrated_gradients(logit, x, steps=16), rtol=REORDER32
    )


def test_path_integrated_gradients(key, x64):
    model, params = _network(key)
    x = jax.random.normal(jax.random.key(1), (5,))
    baseline = jax.random.normal(jax.random.key(2), (5,))

    def f(z):
        return model.apply(params, z)[2]

    def line(a):
        return baseline + a * (x - baseline)

    np.testing.assert_allclose(
        attr.path_integrated_gradients(f, line, steps=30),
        attr.integrated_gradients(f, x, baseline=baseline, steps=30),
        rtol=EXACT64,
        atol=EXACT64,
    )

    def curve(a):  # from the baseline to x, bending through a sine
        return line(a) + jnp.sin(jnp.pi * a) * jnp.arange(5.0)

    pig = attr.path_integrated_gradients(f, curve, steps=60, chunk_size=16)
    np.testing.assert_allclose(jnp.sum(pig), f(x) - f(baseline), rtol=COMPLETENESS64)
    straight = attr.integrated_gradients(f, x, baseline=baseline)
    assert not np.allclose(pig, straight, atol=1e-3)


def test_blurred_baseline(key):
    image = jax.random.uniform(key, (6, 7, 3))
    blurred = attr.blurred_baseline(image, sigma=1.5, axes=(0, 1))
    assert blurred.shape == image.shape and blurred.dtype == image.dtype
    # The blur averages: each channel's range shrinks, constants stay put,
    # channels never mix.
    assert float(jnp.ptp(blurred)) < float(jnp.ptp(image))
    np.testing.assert_allclose(
        attr.blurred_baseline(jnp.full((5, 5), 0.7)), 0.7, rtol=EXACT32
    )
    one_channel = attr.blurred_baseline(image[..., 1], sigma=1.5)
    np.testing.assert_allclose(blurred[..., 1], one_channel, rtol=EXACT32)
    # Small sigma: the identity; the blur is linear in the image.
    np.testing.assert_allclose(attr.blurred_baseline(image, sigma=0.05), image)
    both = attr.blurred_baseline(2.0 * image + 1.0, sigma=1.0)
    np.testing.assert_allclose(
        both, 2.0 * attr.blurred_baseline(image, sigma=1.0) + 1.0, rtol=EXACT32
    )

    def f(z):
        return jnp.sum(jnp.tanh(z) * jnp.cos(z[::-1]))

    ig = attr.integrated_gradients(f, image, baseline=blurred, steps=32)
    rel = attr.completeness_delta(f, image, ig, baseline=blurred, relative=True)
    assert float(rel) < 1e-4


def test_uniform_and_expected_integrated_gradients(key, x64):
    model, params = _network(key)
    x = jax.random.normal(jax.random.key(1), (5,))
    baselines = attr.uniform_baselines(key, x, num_samples=6, minval=-1.0, maxval=2.0)
    assert baselines.shape == (6, 5) and baselines.dtype == jnp.float64
    assert float(baselines.min()) >= -1.0 and float(baselines.max()) < 2.0

    def f(z):
        return model.apply(params, z)[0]

    eg = attr.expected_integrated_gradients(f, x, baselines, steps=40)
    mean = jnp.mean(
        jax.vmap(lambda b: attr.integrated_gradients(f, x, baseline=b, steps=40))(
            baselines
        ),
        0,
    )
    np.testing.assert_allclose(eg, mean, rtol=EXACT64, atol=EXACT64)
    delta = attr.completeness_delta(f, x, eg, baseline=baselines)
    assert abs(float(delta)) < COMPLETENESS64


def test_completeness_delta_sign_and_relative():
    def f(z):
        return z[0] * z[1]

    x = jnp.array([2.0, 3.0])
    # Left Riemann with 4 nodes attributes 3/4 of f(x) - f(0) = 6.
    ig = attr.integrated_gradients(f, x, steps=4, method="riemann_left")
    assert float(attr.completeness_delta(f, x, ig)) == pytest.approx(-1.5)
    rel = attr.completeness_delta(f, x, ig, baseline=jnp.zeros(2), relative=True)
    assert float(rel) == pytest.approx(0.25)


def test_integrated_gradients_to_tolerance():
    def f(z):
        return z[0] * z[1]

    x = jnp.array([2.0, 3.0])
    # Left Riemann errs by exactly 1 / steps: the first power of two >= 1 / rtol.
    res = attr.integrated_gradients_to_tolerance(f, x, rtol=0.01, method="riemann_left")
    assert res.steps == 128 and res.rel_error == pytest.approx(1 / 128)
    res = attr.integrated_gradients_to_tolerance(f, x, rtol=1e-6)
    assert res.steps == 4 and res.rel_error < 1e-6  # exact already
    capped = attr.integrated_gradients_to_tolerance(
        f, x, rtol=1e-3, method="riemann_right", max_steps=48
    )
    assert capped.steps == 48 and capped.rel_error == pytest.approx(1 / 48, rel=1e-4)


def test_gradient_x_input_is_one_node_ig(key):
    def f(z):
        return jnp.sum(jnp.sin(z) ** 2)

    x = jax.random.normal(key, (7,))
    baseline = jnp.full(7, 0.5)
    np.testing.assert_allclose(
        attr.gradient_x_input(f, x, baseline=baseline),
        attr.integrated_gradients(
            f, x, baseline=baseline, steps=1, method="riemann_right"
        ),
        rtol=EXACT32,
    )


def test_deletion_curve():
    weights = jnp.array([0.5, -1.0, 2.0, 0.25])

    def f(z):
        return jnp.dot(weights, z)

    x = jnp.array([1.0, 2.0, 1.0, 4.0])
    ig = attr.integrated_gradients(f, x)  # weights * x = [0.5, -2, 2, 1]
    curve = attr.deletion_curve(f, x, ig)
    # f(x) = 1.5; deleted in the order 2, 3, 0, 1 (contributions 2, 1, 0.5, -2).
    np.testing.assert_allclose(curve, [1.5, -0.5, -1.5, -2.0, 0.0], rtol=EXACT32)
    half = attr.deletion_curve(f, x, ig, baseline=jnp.ones(4), num_points=2)
    np.testing.assert_allclose(half, [1.5, 0.75, 1.75], rtol=EXACT32)
    # Works on any shape: a 2x2 image gives the same curve.
    square = attr.deletion_curve(
        lambda z: f(z.ravel()), x.reshape(2, 2), ig.reshape(2, 2)
    )
    np.testing.assert_allclose(square, curve, rtol=EXACT32)


def test_completeness_errors_known_answers():
    def f(z):
        return z[0] * z[1]

    x = jnp.array([2.0, 3.0])  # f(x) - f(0) = 6
    # The integrand is linear in alpha: the true trapezoid rule is exact from 2 nodes,
    # Captum's weights (sum (n - 1) / n) miss by 1 / n; right Riemann errs by 1 / n.
    trapezoid = attr.completeness_errors(f, x, steps=(2, 4), method="riemann_trapezoid")
    np.testing.assert_allclose(trapezoid.rel_error, [0.0, 0.0], atol=EXACT32)
    np.testing.assert_allclose(trapezoid.rel_error_captum, [0.5, 0.25], rtol=EXACT32)
    right = attr.completeness_errors(f, x, steps=(1, 4), method="riemann_right")
    np.testing.assert_allclose(right.rel_error, [1.0, 0.25], rtol=EXACT32)
    chex.assert_trees_all_close(right.rel_error_captum, right.rel_error)


def test_completeness_errors_agree_with_completeness_delta(key):
    model, params = _network(key, (5, 8, 3))

    def f(z):
        return model.apply(params, z)[1]

    x, baseline = jax.random.normal(key, (2, 5))
    steps = (1, 3, 9)

    @jax.jit  # both sides in one program, not one per primitive
    def both(x, baseline):
        errors = attr.completeness_errors(
            f, x, steps=steps, baseline=baseline, method="riemann_left"
        )
        expected = [
            attr.completeness_delta(
                f,
                x,
                attr.integrated_gradients(
                    f, x, baseline=baseline, steps=n, method="riemann_left"
                ),
                baseline=baseline,
                relative=True,
            )
            for n in steps
        ]
        return errors, expected

    errors, expected = both(x, baseline)
    chex.assert_trees_all_close(errors.rel_error, jnp.stack(expected), rtol=REORDER32)


def test_deletion_area():
    curve = jnp.array([6.0, 3.0, 1.0, 0.0])
    np.testing.assert_allclose(attr.deletion_area(curve), 7.0 / 3.0, rtol=EXACT32)
    curves = jax.random.uniform(jax.random.key(1), (3, 2, 9))
    expected = np.trapezoid(np.asarray(curves), np.linspace(0, 1, 9), axis=-1)
    np.testing.assert_allclose(attr.deletion_area(curves), expected, rtol=EXACT32)
    # A constant score has its value as area; a score gone at once has half a step.
    assert float(attr.deletion_area(jnp.ones(5))) == pytest.approx(1.0)
    assert float(attr.deletion_area(jnp.array([1.0, 0.0, 0.0]))) == pytest.approx(0.25)


def test_batched_attribution_compiles_once(key):
    """The batched path (IG, its completeness errors, deletion curves and their areas)
    is one program: new images, labels and parameters of the same shapes reuse it."""
    model, _ = _network(key, (5, 8, 3))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def explain(params, xs, ys):
        def one(x, y):
            def logit(z):
                return model.apply(params, z)[y]

            ig = attr.integrated_gradients(logit, x, steps=8)
            probability = lambda z: jax.nn.softmax(model.apply(params, z))[y]  # noqa: E731
            curve = attr.deletion_curve(probability, x, ig)
            errors = attr.completeness_errors(logit, x, steps=(2, 8))
            return ig, attr.deletion_area(curve), errors.rel_error

        return jax.vmap(one)(xs, ys)

    for i in range(3):
        k_params, k_x = jax.random.split(jax.random.fold_in(key, i))
        params = model.init(k_params, jnp.zeros(5))
        xs = jax.random.normal(k_x, (4, 5))
        ig, area, errors = explain(params, xs, jnp.arange(4) % 3)
        assert ig.shape == (4, 5) and area.shape == (4,) and errors.shape == (4, 2)
        assert bool(jnp.all((area >= 0) & (area <= 1)))
        assert float(errors[:, 1].max()) < 1e-3  # 8-node Gauss-Legendre converged


def _batch_problem():
    """A tanh MLP (linen), a batch of 6 inputs, per-example targets and baselines."""
    model = MLP((8, 3))
    keys = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(keys[0], (6, 5))
    baseline = 0.1 * jax.random.normal(keys[1], (6, 5))
    params = model.init(keys[2], x[:1])
    return model.apply, params, x, baseline, jnp.array([0, 1, 2, 0, 1, 2])


def test_batch_integrated_gradients_equal_the_per_example_ones():
    apply, params, x, baseline, targets = _batch_problem()

    def one(xi, bi, ti):
        f = lambda z: apply(params, z[None])[0, ti]  # noqa: E731
        ig = attr.integrated_gradients(f, xi, baseline=bi, steps=16)
        return ig, attr.completeness_delta(f, xi, ig, baseline=bi)

    expected, expected_deltas = jax.vmap(one)(x, baseline, targets)
    for chunk in ("auto", None, 5):
        got = attr.batch_integrated_gradients(
            apply, params, x, targets, baseline=baseline, steps=16, chunk_size=chunk
        )
        chex.assert_trees_all_close(got.attributions, expected, atol=1e-5)
        chex.assert_trees_all_close(got.deltas, expected_deltas, atol=1e-5)


def test_batch_integrated_gradients_take_a_selector_and_an_nnx_model():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(5, 3, rngs=rngs)

        def __call__(self, x):
            return jnp.tanh(self.dense(x))

    graphdef, state = nnx.split(Net(nnx.Rngs(0)))
    apply = lambda s, x: nnx.merge(graphdef, s)(x)  # noqa: E731
    _, _, x, _, targets = _batch_problem()
    by_index = attr.batch_integrated_gradients(apply, state, x, targets, steps=8)
    by_selector = attr.batch_integrated_gradients(
        apply, state, x, lambda out: out[jnp.arange(6), targets], steps=8
    )
    chex.assert_trees_all_close(by_index, by_selector)
    # Gauss-Legendre with 8 nodes integrates this smooth path to ~1e-6.
    assert float(jnp.max(jnp.abs(by_index.deltas))) < 1e-4


# --- attribution through a layer ------------------------------------------------------


def _split_network(key):
    """A tanh network split at its hidden layer: ``(body, head_for(label))``."""
    k1, k2, k3 = jax.random.split(key, 3)
    w1 = jax.random.normal(k1, (5, 8)) / np.sqrt(5)
    w2 = jax.random.normal(k2, (8, 3)) / np.sqrt(8)
    b1 = 0.1 * jax.random.normal(k3, (8,))

    def body(x):
        return jnp.tanh(x @ w1 + b1)

    def head_for(label):
        return lambda y: jnp.tanh(y @ w2)[label]

    return body, head_for


def test_layer_conductance_known_answer_and_completeness(key, x64):
    # Closed form: y = x**2 elementwise, head = c . y, so Cond_j = c_j (x_j^2 - x'_j^2)
    # and layer IG (linear head) the same.
    c = jnp.array([1.0, -2.0, 0.5])
    x, baseline = jnp.array([1.0, 2.0, -1.5]), jnp.array([0.5, -1.0, 0.0])
    expected = c * (x**2 - baseline**2)
    for fn in (attr.layer_conductance, attr.layer_integrated_gradients):
        got = fn(jnp.square, lambda y: c @ y, x, baseline=baseline, steps=3)
        np.testing.assert_allclose(got, expected, rtol=EXACT64)
    # A smooth network: completeness through the layer, and the layer's total equals
    # the inputs' total of integrated gradients with the same nodes.
    body, head_for = _split_network(key)
    x = jax.random.normal(jax.random.key(1), (5,))
    baseline = jax.random.normal(jax.random.key(2), (5,))
    for label in range(3):
        head = head_for(label)
        change = head(body(x)) - head(body(baseline))
        cond = attr.layer_conductance(body, head, x, baseline=baseline)
        lig = attr.layer_integrated_gradients(body, head, x, baseline=baseline)
        ig = attr.integrated_gradients(
            lambda z, head=head: head(body(z)), x, baseline=baseline
        )
        assert cond.shape == lig.shape == (8,)
        assert float(jnp.abs(cond.sum() - change)) < COMPLETENESS64
        assert float(jnp.abs(lig.sum() - change)) < COMPLETENESS64
        assert float(jnp.abs(cond.sum() - ig.sum())) < EXACT64
        # Different paths in the layer's space (the image of the input line vs the
        # straight line between activations): equal totals, different units.
        assert float(jnp.abs(cond - lig).max()) > 1e-5


def test_layer_conductance_integrand_by_finite_differences(key, x64):
    """dy/dalpha from forward mode against central differences of the layer."""
    body, head_for = _split_network(key)
    head = head_for(1)
    x = jax.random.normal(jax.random.key(1), (5,))
    alphas, weights = attr.quadrature_rule("gausslegendre", 20)
    h = 1e-6
    by_differences = sum(
        w
        * jax.grad(head)(body(a * x))
        * (body((a + h) * x) - body((a - h) * x))
        / (2 * h)
        for a, w in zip(alphas, weights, strict=True)
    )
    cond = attr.layer_conductance(body, head, x, steps=20)
    np.testing.assert_allclose(cond, by_differences, atol=1e-8)


def test_layer_attribution_batches_chunks_and_refusals(key):
    body, head_for = _split_network(key)
    xs = jax.random.normal(jax.random.key(1), (4, 5))
    labels = jnp.array([0, 2, 1, 2])

    def both(x, label, chunk_size=None):
        head = lambda y: jnp.take(jnp.tanh(y @ jnp.eye(8, 3)), label)  # noqa: E731
        return [
            fn(body, head, x, steps=7, chunk_size=chunk_size)
            for fn in (attr.layer_conductance, attr.layer_integrated_gradients)
        ]

    batched = jax.jit(jax.vmap(both))(xs, labels)
    chunked = jax.jit(jax.vmap(lambda x, y: both(x, y, chunk_size=3)))(xs, labels)
    looped = [both(x, y) for x, y in zip(xs, labels, strict=True)]
    for k in range(2):
        np.testing.assert_allclose(
            batched[k], jnp.stack([row[k] for row in looped]), atol=REORDER32
        )
        np.testing.assert_allclose(batched[k], chunked[k], atol=REORDER32)
    with pytest.raises(ValueError, match="head must return a scalar"):
        attr.layer_conductance(body, lambda y: y, xs[0])
    with pytest.raises(TypeError, match="body\\(x\\) must have a floating dtype"):
        attr.layer_conductance(lambda x: (x > 0).astype(jnp.int32), jnp.sum, xs[0])
    with pytest.raises(ValueError, match="baseline must have shape"):
        attr.layer_integrated_gradients(body, head_for(0), xs[0], baseline=jnp.ones(3))
