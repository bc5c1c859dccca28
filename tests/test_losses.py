"""chainlab.losses: values, derivatives at the kinks, mining, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from chainlab import losses

# float32 agreement of two formulas of the same value (a few ulps of O(1) numbers).
F32_RTOL = 1e-6
# Reductions over a few float32 terms (norms, sums, log-sum-exp): ~10 ulps.
F32_SUM_RTOL = 1e-5
# A hinge is a difference of O(1) distances: its float32 error is absolute, a few ulps
# of the distances, however small the hinge itself is.
F32_HINGE_ATOL = 1e-6
# float64 agreement of two formulas of the same value.
F64_RTOL = 1e-12
# check_grads default step is 1e-4 with central differences in float64: the truncation
# error is O(eps^2 * f''') ~ 1e-8 relative, so 1e-6 is safe and still catches bugs.
GRAD_CHECK_TOL = 1e-6
# Central differences with step 1e-6 in float64: error ~ 1e-12 truncation + 1e-10
# rounding; 1e-7 relative is comfortable.
FD_STEP = 1e-6
FD_RTOL = 1e-7


def check_second_order(f, args):
    """check_grads in both modes to order 2, on the jitted function (one compile per
    transformation instead of one per primitive keeps the suite fast)."""
    check_grads(
        jax.jit(f),
        args,
        order=2,
        modes=("fwd", "rev"),
        atol=GRAD_CHECK_TOL,
        rtol=GRAD_CHECK_TOL,
    )


def central_difference(f, x, step=FD_STEP):
    """Gradient of scalar f at x (float64) by central differences, coordinate-wise."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[index] = step
        grad[index] = (float(f(x + e)) - float(f(x - e))) / (2 * step)
    return grad


# ----------------------------------------------------------------------------- Huber

DELTA = 1.5
# The exact points where tie rules bite, plus one point in each smooth region.
HUBER_POINTS = (-3.0, -DELTA, -0.5, 0.0, 0.5, DELTA, 3.0)


def huber_reference(r, delta):
    """Huber 1964 written out by hand, in plain Python."""
    return 0.5 * r * r if abs(r) <= delta else delta * (abs(r) - 0.5 * delta)


@pytest.mark.parametrize("delta", [0.5, DELTA, 2.0])
def test_huber_values_match_hand_reference_and_optax(delta):
    r = jnp.asarray([-4.0, -delta, -0.3, 0.0, 0.3, delta, 4.0])
    expected = [huber_reference(float(v), delta) for v in r]
    np.testing.assert_allclose(losses.huber(r, delta=delta), expected, rtol=F32_RTOL)
    np.testing.assert_allclose(
        losses.huber(r, delta=delta),
        optax.losses.huber_loss(r, delta=delta),
        rtol=F32_RTOL,
    )


def test_huber_derivative_is_clip_exactly_at_kinks_in_every_mode():
    r = jnp.asarray(HUBER_POINTS)
    expected = np.clip(np.asarray(HUBER_POINTS), -DELTA, DELTA)

    def h(x):
        return losses.huber(x, delta=DELTA)

    @jax.jit
    def derivatives(x):
        return (
            jax.vmap(jax.grad(h))(x),
            jax.jvp(h, (x,), (jnp.ones_like(x),))[1],
            jnp.diag(jax.jacfwd(h)(x)),
            jnp.diag(jax.jacrev(h)(x)),
        )

    for derivative in derivatives(r):
        np.testing.assert_array_equal(derivative, expected)
    # Eagerly too: the boundary values are the full slope, not a 1/2-tie.
    assert float(jax.grad(h)(DELTA)) == DELTA
    assert float(jax.grad(h)(-DELTA)) == -DELTA


def test_huber_second_derivative_is_indicator_of_closed_quadratic_region():
    def h(x):
        return losses.huber(x, delta=DELTA)

    r = jnp.asarray(HUBER_POINTS)
    expected = (np.abs(np.asarray(HUBER_POINTS)) <= DELTA).astype(np.float32)
    second = jax.jit(
        lambda x: (jax.vmap(jax.hessian(h))(x), jax.vmap(jax.jacfwd(jax.grad(h)))(x))
    )
    for derivative in second(r):
        np.testing.assert_array_equal(derivative, expected)

    # The min-based formulation (as in optax) splits the tie between both factors of
    # q**2 / 2: curvature (1/2)**2 = 1/4, which neither side of the kink has. Ours is 1
    # there (the quadratic side).
    def min_based(x):
        quadratic = jnp.minimum(jnp.abs(x), DELTA)
        return 0.5 * quadratic**2 + DELTA * (jnp.abs(x) - quadratic)

    assert float(jax.hessian(min_based)(DELTA)) == 0.25
    assert float(jax.hessian(h)(DELTA)) == 1.0


def test_huber_derivative_matches_finite_differences_off_kinks(x64):
    r = np.array([-3.1, -1.2, -0.4, 0.2, 1.1, 2.7])
    analytic = jax.grad(lambda x: jnp.sum(losses.huber(x, delta=DELTA)))(r)
    numeric = central_difference(lambda x: jnp.sum(losses.huber(x, delta=DELTA)), r)
    np.testing.assert_allclose(analytic, numeric, rtol=FD_RTOL)
    np.testing.assert_allclose(analytic, np.clip(r, -DELTA, DELTA), rtol=F64_RTOL)


def test_huber_check_grads_in_residual_and_delta(x64):
    r = jnp.asarray([-3.1, -0.4, 0.2, 2.7])
    check_second_order(lambda x, d: losses.huber(x, delta=d), (r, 1.3))


def test_huber_delta_derivative_is_excess_over_delta_including_boundary(x64):
    r = jnp.asarray([-3.0, -DELTA, 0.0, 1.0, DELTA, 2.5])
    grad_delta = jax.grad(lambda d: jnp.sum(losses.huber(r, delta=d)))(DELTA)
    np.testing.assert_allclose(
        grad_delta, np.sum(np.maximum(np.abs(r) - DELTA, 0.0)), rtol=F64_RTOL
    )


def test_huber_under_jit_and_vmap_and_dtypes():
    r = jnp.linspace(-3.0, 3.0, 7)
    eager = losses.huber(r, delta=DELTA)
    jitted = jax.jit(lambda x, d: losses.huber(x, delta=d))(r, DELTA)
    mapped = jax.vmap(lambda x: losses.huber(x, delta=DELTA))(r)
    np.testing.assert_array_equal(eager, jitted)
    np.testing.assert_array_equal(eager, mapped)
    assert eager.dtype == jnp.float32
    assert losses.huber(jnp.arange(3), delta=1.0).dtype == jnp.float32
    per_delta = jax.vmap(lambda d: losses.huber(2.0, delta=d))(jnp.asarray([1.0, 3.0]))
    np.testing.assert_allclose(per_delta, [1.5, 2.0], rtol=F32_RTOL)


# --------------------------------------------------------------------------- p-norms

NORM_DEGREES = (1, 1.5, 2, 3, math.inf)


@pytest.mark.parametrize("p", NORM_DEGREES)
def test_pnorm_matches_numpy_with_negative_entries(p):
    # Negative entries: an odd p without |.| (as in optax's triplet loss) fails here.
    x = np.array([[1.0, -2.0, 0.5], [-3.0, 0.0, -1.0]], np.float32)
    expected = np.linalg.norm(x, ord=p, axis=-1)
    np.testing.assert_allclose(losses.pnorm(x, p=p), expected, rtol=F32_RTOL)


def test_pnorm_does_not_overflow_for_large_p():
    x = jnp.asarray([3e30, -4e30])
    np.testing.assert_allclose(losses.pnorm(x, p=2), 5e30, rtol=F32_RTOL)
    np.testing.assert_allclose(
        losses.pnorm(x, p=3), (27 + 64) ** (1 / 3) * 1e30, rtol=F32_RTOL
    )


@pytest.mark.parametrize("p", NORM_DEGREES)
def test_pnorm_gradient_closed_form(p, x64):
    x = np.array([0.7, -1.3, 0.2])
    norm = np.linalg.norm(x, ord=p)
    if p == math.inf:
        expected = np.array([0.0, -1.0, 0.0])
    else:
        expected = np.sign(x) * (np.abs(x) / norm) ** (p - 1)
    np.testing.assert_allclose(
        jax.grad(lambda v: losses.pnorm(v, p=p))(x), expected, rtol=F64_RTOL
    )
    numeric = central_difference(lambda v: losses.pnorm(v, p=p), x)
    np.testing.assert_allclose(expected, numeric, rtol=FD_RTOL)


@pytest.mark.parametrize("p", NORM_DEGREES)
def test_pnorm_check_grads(p, x64):
    x = jnp.asarray([[0.7, -1.3, 0.2], [2.0, 0.1, -0.4]])
    # p = 1 and inf are piecewise linear: their second derivative is 0 away from kinks.
    check_second_order(lambda v: losses.pnorm(v, p=p), (x,))


@pytest.mark.parametrize("p", NORM_DEGREES)
def test_pnorm_at_zero_has_zero_gradient_and_finite_hessian(p):
    zero = jnp.zeros(3)

    def f(v):
        return losses.pnorm(v, p=p)

    @jax.jit
    def at(x):
        return (
            f(x),
            jax.grad(f)(x),
            jax.jvp(f, (x,), (jnp.ones(3),))[1],
            jax.hessian(f)(x),
        )

    value, grad, tangent, hessian = at(zero)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, np.zeros(3))
    assert float(tangent) == 0.0
    assert np.all(np.isfinite(hessian))
    # A zero coordinate next to non-zero ones keeps the Hessian finite as well.
    assert np.all(np.isfinite(at(jnp.asarray([0.0, 1.0, -2.0]))[3]))


def test_pnorm_naive_norm_would_give_nan_at_zero():
    # Why the custom rule exists: the textbook formula's gradient at 0 is 0/0.
    assert np.isnan(jax.grad(jnp.linalg.norm)(jnp.zeros(2))).all()
    assert np.isfinite(jax.grad(losses.pnorm)(jnp.zeros(2))).all()


def test_pairwise_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    expected = np.array([[np.linalg.norm(a - b, ord=3) for b in y] for a in x])
    np.testing.assert_allclose(
        losses.pairwise_distance(x, y, p=3), expected, rtol=F32_SUM_RTOL
    )


# --------------------------------------------------------------------------- triplet


def triplet_reference(a, p, n, margin, degree):
    """Plain numpy, one triplet per row."""
    d_ap = np.linalg.norm(a - p, ord=degree, axis=-1)
    d_an = np.linalg.norm(a - n, ord=degree, axis=-1)
    return np.maximum(d_ap - d_an + margin, 0.0)


@pytest.mark.parametrize("p", NORM_DEGREES)
def test_triplet_values_match_reference(p):
    rng = np.random.default_rng(1)
    a, pos, neg = (rng.normal(size=(6, 4)).astype(np.float32) for _ in range(3))
    neg[:3] = a[:3] + 10.0 * neg[:3]  # far negatives: these hinges are inactive
    expected = triplet_reference(a, pos, neg, 0.5, p)
    got = losses.triplet(a, pos, neg, margin=0.5, p=p)
    np.testing.assert_allclose(got, expected, rtol=F32_SUM_RTOL, atol=F32_HINGE_ATOL)
    assert (expected > 0).any() and (expected == 0).any()  # both hinge regimes


def test_triplet_hand_computed_value_odd_p():
    # |a - p| = (1, 2) -> (1 + 8)^(1/3); |a - n| = (0, 1) -> 1.
    a, pos, neg = jnp.zeros(2), jnp.asarray([-1.0, -2.0]), jnp.asarray([0.0, -1.0])
    expected = 9 ** (1 / 3) - 1 + 0.2
    np.testing.assert_allclose(
        losses.triplet(a, pos, neg, margin=0.2, p=3), expected, rtol=F32_RTOL
    )


def test_triplet_gradients_match_closed_form(x64):
    rng = np.random.default_rng(2)
    a, pos, neg = (rng.normal(size=3) for _ in range(3))
    pos = a + 2.0 * (pos - a)  # push the positive away so that the hinge is active
    d_ap, d_an = np.linalg.norm(a - pos), np.linalg.norm(a - neg)
    assert d_ap - d_an + 1.0 > 0
    grads = jax.grad(losses.triplet, argnums=(0, 1, 2))(a, pos, neg)
    np.testing.assert_allclose(
        grads[0], (a - pos) / d_ap - (a - neg) / d_an, rtol=F64_RTOL
    )
    np.testing.assert_allclose(grads[1], -(a - pos) / d_ap, rtol=F64_RTOL)
    np.testing.assert_allclose(grads[2], (a - neg) / d_an, rtol=F64_RTOL)
    numeric = central_difference(lambda v: losses.triplet(v, pos, neg), a)
    np.testing.assert_allclose(grads[0], numeric, rtol=FD_RTOL)


def test_triplet_check_grads(x64):
    # The hinge composes the same way for every p; pnorm's rule is checked per p above.
    rng = np.random.default_rng(3)
    a, pos, neg = (rng.normal(size=(4, 3)) for _ in range(3))
    check_second_order(
        lambda x, y, z: losses.triplet(x, y, z, margin=1.0, p=3), (a, pos, neg)
    )


def test_triplet_inactive_and_exact_boundary_have_zero_gradient():
    a, pos = jnp.zeros(2), jnp.asarray([1.0, 0.0])
    far = jnp.asarray([5.0, 0.0])
    assert not np.any(jax.grad(losses.triplet)(a, pos, far))
    # d_ap - d_an + margin == 0 exactly: the hinge is inactive (0), not split (1/2).
    boundary = jnp.asarray([2.0, 0.0])
    assert float(losses.triplet(a, pos, boundary, margin=1.0)) == 0.0
    assert not np.any(jax.grad(losses.triplet)(a, pos, boundary, margin=1.0))


@pytest.mark.parametrize("p", NORM_DEGREES)
def test_triplet_coinciding_points_give_finite_gradients(p):
    a = jnp.asarray([[0.3, -0.2, 1.0], [1.0, 1.0, 1.0]])
    n = jnp.asarray([[0.4, -0.2, 1.0], [1.0, 1.0, 1.0]])  # second row: all coincide

    def f(x, y, z):
        return losses.triplet(x, y, z, margin=0.5, p=p, reduction="sum")

    @jax.jit
    def derivatives(a, n):
        def of_anchor(x):
            return f(x, a, n)

        return (
            jax.grad(f, argnums=(0, 1, 2))(a, a, n),
            jax.jvp(of_anchor, (a,), (jnp.ones_like(a),))[1],
            jax.hessian(of_anchor)(a),
        )

    grads, tangent, hessian = derivatives(a, n)
    for g in grads:
        assert np.all(np.isfinite(g))
    # d_ap = 0 contributes the subgradient 0: only the negative term moves the anchor.
    np.testing.assert_array_equal(grads[1], np.zeros_like(a))
    assert np.isfinite(tangent)
    assert np.all(np.isfinite(hessian))


def test_triplet_reductions_jit_and_vmap():
    rng = np.random.default_rng(4)
    a, pos, neg = (jnp.asarray(rng.normal(size=(5, 3)), jnp.float32) for _ in range(3))
    per = losses.triplet(a, pos, neg)
    assert per.shape == (5,)
    np.testing.assert_allclose(
        losses.triplet(a, pos, neg, reduction="mean"), per.mean(), rtol=F32_RTOL
    )
    np.testing.assert_allclose(
        losses.triplet(a, pos, neg, reduction="sum"), per.sum(), rtol=F32_RTOL
    )
    jitted = jax.jit(lambda x, y, z, m: losses.triplet(x, y, z, margin=m))
    np.testing.assert_allclose(jitted(a, pos, neg, 1.0), per, rtol=F32_RTOL)
    mapped = jax.vmap(losses.triplet)(a, pos, neg)
    np.testing.assert_allclose(mapped, per, rtol=F32_RTOL)


# ---------------------------------------------------------------------------- mining


def brute_force_batch_hard(e, labels, degree):
    n = len(labels)
    d = np.array(
        [[np.linalg.norm(e[i] - e[j], ord=degree) for j in range(n)] for i in range(n)]
    )
    rows = []
    for i in range(n):
        pos = [j for j in range(n) if labels[j] == labels[i] and j != i]
        neg = [k for k in range(n) if labels[k] != labels[i]]
        if pos and neg:
            j = max(pos, key=lambda j: d[i, j])
            k = min(neg, key=lambda k: d[i, k])
            rows.append((i, j, k))
    return rows


def brute_force_semi_hard(e, labels, degree):
    n = len(labels)
    d = np.array(
        [[np.linalg.norm(e[i] - e[j], ord=degree) for j in range(n)] for i in range(n)]
    )
    rows = []
    for i in range(n):
        neg = [k for k in range(n) if labels[k] != labels[i]]
        for j in range(n):
            if labels[j] != labels[i] or j == i or not neg:
                continue
            farther = [k for k in neg if d[i, k] > d[i, j]]
            if farther:
                k = min(farther, key=lambda k: d[i, k])
            else:
                k = max(neg, key=lambda k: d[i, k])
            rows.append((i, j, k))
    return rows


MINING_CASES = [
    (
        "batch_hard",
        losses.mine_batch_hard,
        losses.batch_hard_triplet,
        brute_force_batch_hard,
    ),
    (
        "semi_hard",
        losses.mine_semi_hard,
        losses.semi_hard_triplet,
        brute_force_semi_hard,
    ),
]


def mining_batch():
    rng = np.random.default_rng(5)
    e = rng.normal(size=(9, 2)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3], np.int32)  # class 3: no positive
    return e, labels


@pytest.mark.parametrize(("name", "mine", "loss", "brute"), MINING_CASES)
def test_mining_matches_brute_force(name, mine, loss, brute):
    # p enters only through pnorm (checked for every p above): one odd degree here.
    p = 3
    e, labels = mining_batch()

    @jax.jit
    def mined(e, labels):
        values = {
            reduction: loss(e, labels, margin=0.3, p=p, reduction=reduction)
            for reduction in losses.REDUCTIONS
        }
        return mine(e, labels, p=p), values

    t, values = mined(e, labels)
    valid = np.asarray(t.valid)
    got = list(
        zip(
            np.asarray(t.anchor)[valid].tolist(),
            np.asarray(t.positive)[valid].tolist(),
            np.asarray(t.negative)[valid].tolist(),
            strict=True,
        )
    )
    expected = brute(e, labels, p)
    assert got == expected
    a, pos, neg = (np.array(c) for c in zip(*expected, strict=True))
    reference = triplet_reference(e[a], e[pos], e[neg], 0.3, p)
    np.testing.assert_allclose(values["mean"], reference.mean(), rtol=F32_SUM_RTOL)
    np.testing.assert_allclose(values["sum"], reference.sum(), rtol=F32_SUM_RTOL)
    per = np.asarray(values["none"])
    assert per.shape == valid.shape
    np.testing.assert_allclose(
        per[valid], reference, rtol=F32_SUM_RTOL, atol=F32_HINGE_ATOL
    )
    assert not np.any(per[~valid])


@pytest.mark.parametrize(("name", "mine", "loss", "brute"), MINING_CASES)
def test_mined_loss_gradients_finite_with_duplicates_and_jit(name, mine, loss, brute):
    e, labels = mining_batch()
    e = np.concatenate([e, e[:2]])  # exact duplicates: zero distances within a class
    labels = np.concatenate([labels, labels[:2]])
    grad = jax.jit(jax.grad(lambda x: loss(x, labels, margin=0.5, reduction="mean")))(e)
    assert np.all(np.isfinite(grad))
    assert np.any(grad)  # some triplets are active, so the check is not vacuous


def test_mined_loss_is_zero_without_valid_triplets():
    e = jnp.asarray([[0.0, 1.0], [1.0, 0.0]])
    for loss in (losses.batch_hard_triplet, losses.semi_hard_triplet):
        jitted = jax.jit(lambda e, y, loss=loss: loss(e, y, reduction="mean"))
        assert float(jitted(e, jnp.asarray([0, 0]))) == 0.0  # no negatives
        assert float(jitted(e, jnp.asarray([0, 1]))) == 0.0  # no positives


def test_triplet_family_defaults_to_per_triplet_losses():
    e = jnp.asarray([[0.0], [1.0], [3.0], [0.5]])
    labels = jnp.asarray([0, 0, 0, 1])

    @jax.jit  # one program instead of one per primitive; defaults as given
    def defaults(e, labels):
        return (
            losses.triplet(e[:2], e[1:3], e[2:]),
            losses.batch_hard_triplet(e, labels),
            losses.semi_hard_triplet(e, labels),
        )

    per_triplet, batch_hard, semi_hard = defaults(e, labels)
    assert per_triplet.shape == (2,)
    assert batch_hard.shape == (4,)
    assert semi_hard.shape == (16,)


# --------------------------------------------------------------------- cross-entropy


def test_cross_entropy_matches_reference_and_optax():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=(2, 3)).astype(np.int32)
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_softmax, labels[..., None], -1)[..., 0]
    got = losses.cross_entropy(logits, labels)
    np.testing.assert_allclose(got, expected, rtol=F32_SUM_RTOL)
    np.testing.assert_allclose(
        got,
        optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels),
        rtol=F32_SUM_RTOL,
    )


def test_cross_entropy_stable_for_huge_logits():
    logits = jnp.asarray([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0]])
    labels = jnp.asarray([1, 0])
    # The result 1e4 + ... is exact only to float32's spacing at 1e4 (~1e-3).
    np.testing.assert_allclose(
        losses.cross_entropy(logits, labels),
        [1e4, math.log(2)],
        rtol=F32_RTOL,
        atol=np.spacing(np.float32(1e4)),
    )
    assert np.all(
        np.isfinite(jax.grad(lambda z: losses.cross_entropy(z, labels).sum())(logits))
    )


def test_cross_entropy_gradient_is_softmax_minus_onehot(x64):
    logits = np.array([[0.3, -1.2, 2.0], [0.0, 0.5, -0.5]])
    labels = np.array([2, 0])
    grad = jax.grad(lambda z: losses.cross_entropy(z, labels).sum())(logits)
    expected = jax.nn.softmax(logits) - np.eye(3)[labels]
    np.testing.assert_allclose(grad, expected, rtol=F64_RTOL, atol=F64_RTOL)
    check_second_order(lambda z: losses.cross_entropy(z, labels), (logits,))


def test_array_settings_are_checked_when_concrete_and_not_under_jit():
    r = jnp.asarray([2.0, -3.0])
    with pytest.raises(ValueError, match="delta must be > 0"):
        losses.huber(r, delta=jnp.asarray(-1.0))
    # Traced, the value cannot be inspected: computed as given (documented).
    traced = jax.jit(lambda d: losses.huber(r, delta=d))(jnp.asarray(1.0))
    np.testing.assert_allclose(traced, [1.5, 2.5], rtol=F32_RTOL)


def test_cross_entropy_jit_vmap_and_out_of_range_labels():
    logits = jnp.asarray([[0.0, 1.0], [2.0, -1.0]])
    labels = jnp.asarray([1, 0])
    eager = losses.cross_entropy(logits, labels)
    np.testing.assert_allclose(
        jax.jit(losses.cross_entropy)(logits, labels), eager, rtol=F32_RTOL
    )
    np.testing.assert_allclose(
        jax.vmap(losses.cross_entropy)(logits, labels), eager, rtol=F32_RTOL
    )
    bad = jax.jit(losses.cross_entropy)(logits, jnp.asarray([2, -1]))
    assert np.isnan(bad).all()


# ----------------------------------------------------------------------------- Brier


def test_brier_matches_hand_reference_and_optax():
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(1), (4, 3)))
    labels = jnp.array([0, 2, 1, 2])
    onehot = jax.nn.one_hot(labels, 3)
    want = np.sum((np.asarray(probs) - np.asarray(onehot)) ** 2, axis=-1)
    got = losses.brier(probs, labels)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, want, rtol=F32_SUM_RTOL)
    np.testing.assert_allclose(losses.brier(probs, onehot), want, rtol=F32_SUM_RTOL)
    optax_sum = optax.losses.squared_error(probs, onehot).sum(-1)
    np.testing.assert_allclose(got, optax_sum, rtol=F32_SUM_RTOL)
    # Hand value: (0.75 - 1)^2 + 0.25^2 = 0.125; a perfect forecast scores 0, the
    # worst one 2.
    assert float(losses.brier(jnp.array([0.75, 0.25]), 0)) == 0.125
    assert float(losses.brier(jnp.array([0.0, 1.0]), 1)) == 0.0
    assert float(losses.brier(jnp.array([0.0, 1.0]), 0)) == 2.0


def test_brier_gradient_jit_vmap_and_out_of_range_labels():
    probs = jnp.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    labels = jnp.array([1, 0])
    loss = jax.jit(lambda p, y: jnp.sum(losses.brier(p, y)))
    grad = jax.grad(loss)(probs, labels)
    np.testing.assert_allclose(grad, 2 * (probs - jax.nn.one_hot(labels, 3)), rtol=1e-6)
    per_row = jax.vmap(losses.brier)(probs, labels)
    np.testing.assert_allclose(per_row, losses.brier(probs, labels), rtol=F32_RTOL)
    # A label outside [0, C) is NaN, under jit too (one_hot alone would give 0s).
    outside = jax.jit(losses.brier)(probs, jnp.array([3, -1]))
    assert bool(jnp.all(jnp.isnan(outside)))
