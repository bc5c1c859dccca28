"""Bad inputs for the core functions of the library (see ``test_bad_inputs.py``).

Value settings are tried as Python numbers and as concrete jax arrays: both must be
refused (only a traced value, under ``jit``, goes unchecked).
"""

import jax
import jax.numpy as jnp
import numpy as np
from bad_input_case import Case

from chainlab import activations, attention, attribution, data, gradcheck, losses
from chainlab import normalization as norm


def _square(z):
    return jnp.sum(z**2)


X3 = jnp.ones(3)
Q, K, V = jnp.ones((3, 5)), jnp.ones((4, 5)), jnp.ones((4, 2))
ONES, ZEROS = jnp.ones(3), jnp.zeros(3)
STATE = norm.init_batch_norm_state(3)
TRIPLE = (np.ones((2, 3)),) * 3
E, LABELS = np.ones((3, 2)), np.arange(3)


def _values(label, call, name, allowed):
    """A Python-number case and a concrete-jax-array case of one bad value."""
    return [
        Case(f"{label} python", lambda: call(-1.0), ValueError, f"{name} must be"),
        Case(
            f"{label} jax array",
            lambda: call(jnp.array(-1.0)),
            ValueError,
            f"{name} must be {allowed}",
        ),
    ]


ACTIVATIONS = [
    Case("relu complex", lambda: activations.relu(1j), TypeError, "x must be real"),
    Case(
        "relu_reverse_only complex",
        lambda: activations.relu_reverse_only(1j),
        TypeError,
        "x must be real",
    ),
    Case(
        "leaky_relu slope nan",
        lambda: activations.leaky_relu(X3, jnp.array(jnp.nan)),
        ValueError,
        "slope must be finite",
    ),
    Case(
        "leaky_relu slope shape",
        lambda: activations.leaky_relu(jnp.ones((2, 3)), jnp.ones(3)),
        ValueError,
        "slope must be a scalar or an array of the input's rank",
    ),
    *_values("elu alpha<0", lambda a: activations.elu(X3, a), "alpha", ">= 0"),
    Case(
        "elu alpha shape",
        lambda: activations.elu(jnp.ones((2, 3)), jnp.ones((2, 2))),
        ValueError,
        "alpha must be a scalar or an array",
    ),
    Case(
        "elu side",
        lambda: activations.elu(X3, side="middle"),
        ValueError,
        "side must be one of 'right', 'left'; got 'middle'",
    ),
    Case(
        "maxout weight rank",
        lambda: activations.maxout(jnp.ones(4), jnp.ones((3, 4)), jnp.ones((3, 2))),
        ValueError,
        "weight must have rank 3",
    ),
    Case(
        "maxout x shape",
        lambda: activations.maxout(jnp.ones(5), jnp.ones((3, 4, 2)), jnp.ones((3, 2))),
        ValueError,
        r"x must have shape \(\.\.\., 4\)",
    ),
    Case(
        "maxout bias shape",
        lambda: activations.maxout(jnp.ones(4), jnp.ones((3, 4, 2)), jnp.ones((2, 2))),
        ValueError,
        r"bias must have shape \(3, 2\)",
    ),
]

LOSSES = [
    *_values("huber delta<0", lambda d: losses.huber(X3, delta=d), "delta", "> 0"),
    Case(
        "huber delta=0 jax array",
        lambda: losses.huber(X3, delta=jnp.array(0.0)),
        ValueError,
        "delta must be > 0, got 0.0",
    ),
    Case(
        "huber delta vector",
        lambda: losses.huber(X3, delta=jnp.ones(2)),
        ValueError,
        "delta must be a scalar",
    ),
    Case(
        "huber complex",
        lambda: losses.huber(jnp.ones(2, jnp.complex64)),
        TypeError,
        "residual must be real",
    ),
    Case(
        "pnorm p<1",
        lambda: losses.pnorm(X3, p=0.5),
        ValueError,
        r"p must be in \[1, inf\]",
    ),
    Case(
        "pnorm p array",
        lambda: losses.pnorm(X3, p=jnp.asarray(2.0)),
        TypeError,
        "p must be a Python number",
    ),
    Case("pnorm p nan", lambda: losses.pnorm(X3, p=float("nan")), ValueError, "nan"),
    Case(
        "pnorm scalar x",
        lambda: losses.pnorm(jnp.asarray(1.0)),
        ValueError,
        r"x must have shape \(\.\.\., \*\)",
    ),
    Case(
        "pairwise_distance d mismatch",
        lambda: losses.pairwise_distance(np.ones((4, 3)), np.ones((5, 2))),
        ValueError,
        r"y must have shape \(\*, 3\)",
    ),
    Case(
        "pairwise_distance rank",
        lambda: losses.pairwise_distance(np.ones(3)),
        ValueError,
        "x must have rank 2",
    ),
    Case(
        "triplet shapes",
        lambda: losses.triplet(np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 3))),
        ValueError,
        "anchor, positive and negative must have the same shape",
    ),
    *_values(
        "triplet margin<0",
        lambda m: losses.triplet(*TRIPLE, margin=m),
        "margin",
        ">= 0",
    ),
    Case(
        "triplet reduction",
        lambda: losses.triplet(*TRIPLE, reduction="avg"),
        ValueError,
        "reduction must be one of 'none', 'mean', 'sum'",
    ),
    Case(
        "triplet p",
        lambda: losses.triplet(*TRIPLE, p=0.5),
        ValueError,
        "p must be in",
    ),
    Case(
        "mine_batch_hard labels shape",
        lambda: losses.mine_batch_hard(E, np.array([0, 1])),
        ValueError,
        r"labels must have shape \(3,\)",
    ),
    Case(
        "mine_semi_hard labels dtype",
        lambda: losses.mine_semi_hard(E, np.array([0.0, 1.0, 1.0])),
        TypeError,
        "labels must have a integer dtype",
    ),
    Case(
        "semi_hard_triplet embeddings rank",
        lambda: losses.semi_hard_triplet(np.ones(3), LABELS),
        ValueError,
        "embeddings must have rank 2",
    ),
    Case(
        "batch_hard_triplet reduction",
        lambda: losses.batch_hard_triplet(E, LABELS, reduction="max"),
        ValueError,
        "reduction must be one of",
    ),
    *_values(
        "batch_hard_triplet margin<0",
        lambda m: losses.batch_hard_triplet(E, LABELS, margin=m),
        "margin",
        ">= 0",
    ),
    Case(
        "cross_entropy labels shape",
        lambda: losses.cross_entropy(np.ones((2, 3)), np.zeros(3, np.int32)),
        ValueError,
        r"labels must have shape \(2,\)",
    ),
    Case(
        "cross_entropy scalar logits",
        lambda: losses.cross_entropy(np.ones(()), np.zeros((), np.int32)),
        ValueError,
        "logits must have shape",
    ),
    Case(
        "cross_entropy float labels",
        lambda: losses.cross_entropy(np.ones((2, 3)), np.zeros(2)),
        TypeError,
        "labels must have a integer dtype",
    ),
    Case(
        "brier labels shape",
        lambda: losses.brier(np.ones((2, 3)), np.zeros(3, np.int32)),
        ValueError,
        r"targets must have shape \(2,\)",
    ),
    Case(
        "brier target probabilities shape",
        lambda: losses.brier(np.ones((2, 3)), np.ones((2, 2))),
        ValueError,
        r"targets must have shape \(2, 3\)",
    ),
    Case(
        "brier scalar predictions",
        lambda: losses.brier(np.ones(()), np.zeros((), np.int32)),
        ValueError,
        "predictions must have shape",
    ),
    Case(
        "brier complex predictions",
        lambda: losses.brier(np.ones((2, 3), np.complex64), np.zeros(2, np.int32)),
        TypeError,
        "predictions must be real",
    ),
    Case(
        "brier complex targets",
        lambda: losses.brier(np.ones((2, 3)), np.ones((2, 3), np.complex64)),
        TypeError,
        "targets must be real",
    ),
]

ATTENTION = [
    *_values(
        "attention tau<0", lambda t: attention.attention(Q, K, V, tau=t), "tau", "> 0"
    ),
    Case(
        "attention tau=0 jax array",
        lambda: attention.attention(Q, K, V, tau=jnp.array(0.0)),
        ValueError,
        "tau must be > 0, got 0.0",
    ),
    Case(
        "attention tau vector",
        lambda: attention.attention(Q, K, V, tau=jnp.ones(2)),
        ValueError,
        "tau must be a scalar",
    ),
    Case(
        "attention feature size",
        lambda: attention.attention(Q, K[:, :2], V),
        ValueError,
        r"k must have shape \(\*, 5\)",
    ),
    Case(
        "attention number of keys",
        lambda: attention.attention(Q, K, V[:2]),
        ValueError,
        r"v must have shape \(4, \*\)",
    ),
    Case(
        "attention batch prefix",
        lambda: attention.attention(Q[None], K, V),
        ValueError,
        r"k must have shape \(1, \*, 5\)",
    ),
    Case(
        "attention rank",
        lambda: attention.attention(jnp.ones(5), K, V),
        ValueError,
        "q must have shape",
    ),
    Case(
        "attention mask dtype",
        lambda: attention.attention(Q, K, V, mask=jnp.ones((3, 4))),
        TypeError,
        "mask must have a bool dtype",
    ),
    Case(
        "attention mask shape",
        lambda: attention.attention(Q, K, V, mask=jnp.ones((3, 3), bool)),
        ValueError,
        "mask must broadcast to the logits shape",
    ),
    *_values(
        "attention_tau_grad tau<0",
        lambda t: attention.attention_tau_grad(Q, K, V, t, jnp.ones((3, 2))),
        "tau",
        "> 0",
    ),
    Case(
        "attention_tau_grad cotangent shape",
        lambda: attention.attention_tau_grad(Q, K, V, 1.0, jnp.ones((3, 3))),
        ValueError,
        r"cotangent must have shape \(3, 2\)",
    ),
    *_values(
        "temperature_from_log min_tau<0",
        lambda t: attention.temperature_from_log(0.0, min_tau=t),
        "min_tau",
        "> 0",
    ),
    Case(
        "temperature_from_log min>max",
        lambda: attention.temperature_from_log(0.0, min_tau=2.0, max_tau=1.0),
        ValueError,
        "max_tau must be >= min_tau",
    ),
    Case(
        "temperature_from_log complex",
        lambda: attention.temperature_from_log(1j),
        TypeError,
        "log_tau must be real",
    ),
]

X43 = jnp.ones((4, 3))


def _per_example_losses(w, x):
    return x @ w


NORMALIZATION = [
    *_values(
        "batch_norm_jacobian eps<0",
        lambda e: norm.batch_norm_jacobian(X43, ONES, eps=e),
        "eps",
        ">= 0",
    ),
    Case(
        "batch_norm_jacobian rank 1",
        lambda: norm.batch_norm_jacobian(ONES, ONES),
        ValueError,
        "x must have shape",
    ),
    Case(
        "batch_norm_jacobian scale shape",
        lambda: norm.batch_norm_jacobian(X43, jnp.ones(2)),
        ValueError,
        r"scale must have shape \(3,\)",
    ),
    *_values(
        "batch_norm_grad_identities eps<0",
        lambda e: norm.batch_norm_grad_identities(X43, ONES, X43, eps=e),
        "eps",
        ">= 0",
    ),
    Case(
        "batch_norm_grad_identities cotangent shape",
        lambda: norm.batch_norm_grad_identities(X43, ONES, jnp.ones((3, 3))),
        ValueError,
        r"cotangent must have shape \(4, 3\)",
    ),
    Case(
        "per_example_grads method",
        lambda: norm.per_example_grads(_per_example_losses, ONES, X43, method="pmap"),
        ValueError,
        "method must be one of 'jacrev', 'vmap'; got 'pmap'",
    ),
    Case(
        "per_example_grads axis_name with jacrev",
        lambda: norm.per_example_grads(_per_example_losses, ONES, X43, axis_name="b"),
        ValueError,
        "axis_name is for method='vmap' only",
    ),
    Case(
        "per_example_grads empty batch",
        lambda: norm.per_example_grads(_per_example_losses, ONES, {}),
        ValueError,
        "batch must hold arrays with one common leading axis",
    ),
    Case(
        "per_example_grads leading axes differ",
        lambda: norm.per_example_grads(
            lambda w, b: b[0] @ w, ONES, (X43, jnp.ones((3, 3)))
        ),
        ValueError,
        r"batch must hold arrays with one common leading axis, got shapes",
    ),
    Case(
        "per_example_decompositions empty batch",
        lambda: norm.per_example_decompositions(
            lambda w, x, axis_name=None: x @ w, ONES, {}
        ),
        ValueError,
        "batch must hold arrays with one common leading axis",
    ),
    Case(
        "random_affine num_channels=0",
        lambda: norm.random_affine(jax.random.key(0), 0),
        ValueError,
        "num_channels must be an integer >= 1",
    ),
    Case(
        "per_example_grads scalar loss",
        lambda: norm.per_example_grads(lambda w, x: jnp.sum(x @ w), ONES, X43),
        ValueError,
        r"loss_fn\(params, batch\) must have shape \(4,\)",
    ),
    *_values(
        "batch_norm eps<0",
        lambda e: norm.batch_norm(X43, ONES, ZEROS, eps=e),
        "eps",
        ">= 0",
    ),
    *_values(
        "layer_norm eps<0",
        lambda e: norm.layer_norm(X43, ONES, ZEROS, eps=e),
        "eps",
        ">= 0",
    ),
    *_values(
        "instance_norm eps<0",
        lambda e: norm.instance_norm(jnp.ones((2, 2, 3)), ONES, ZEROS, eps=e),
        "eps",
        ">= 0",
    ),
    Case(
        "batch_norm scale shape",
        lambda: norm.batch_norm(X43, jnp.ones(2), ZEROS),
        ValueError,
        r"scale must have shape \(3,\)",
    ),
    Case(
        "batch_norm scale shape under jit",
        lambda: jax.jit(norm.batch_norm)(X43, jnp.ones(2), ZEROS),
        ValueError,
        r"scale must have shape \(3,\)",
    ),
    Case(
        "batch_norm rank",
        lambda: norm.batch_norm(ONES, ONES, ZEROS),
        ValueError,
        r"x must have shape \(\*, \.\.\., \*\)",
    ),
    Case(
        "layer_norm offset shape",
        lambda: norm.layer_norm(X43, ONES, jnp.zeros((1, 3))),
        ValueError,
        r"offset must have shape \(3,\)",
    ),
    Case(
        "layer_norm scalar x",
        lambda: norm.layer_norm(jnp.array(1.0), jnp.ones(1), jnp.zeros(1)),
        ValueError,
        "x must have shape",
    ),
    Case(
        "instance_norm without spatial axis",
        lambda: norm.instance_norm(X43, ONES, ZEROS),
        ValueError,
        r"x must have shape \(\*, \*, \.\.\., \*\)",
    ),
    Case(
        "init_batch_norm_state 0",
        lambda: norm.init_batch_norm_state(0),
        ValueError,
        "num_channels must be an integer >= 1",
    ),
    Case(
        "batch_norm_stats rank",
        lambda: norm.batch_norm_stats(ONES),
        ValueError,
        "x must have shape",
    ),
    *_values(
        "update_running_stats momentum",
        lambda m: norm.update_running_stats(STATE, X43, momentum=m),
        "momentum",
        r"in \[0, 1\)",
    ),
    Case(
        "update_running_stats momentum=1",
        lambda: norm.update_running_stats(STATE, X43, momentum=1.0),
        ValueError,
        r"momentum must be in \[0, 1\), got 1.0",
    ),
    Case(
        "update_running_stats channels",
        lambda: norm.update_running_stats(STATE, jnp.ones((3, 2))),
        ValueError,
        r"x must have shape \(\.\.\., 3\)",
    ),
    Case(
        "batch_norm_inference state shape",
        lambda: norm.batch_norm_inference(
            jnp.ones((3, 2)), STATE, jnp.ones(2), jnp.zeros(2)
        ),
        ValueError,
        r"state.mean must have shape \(2,\)",
    ),
    *_values(
        "batch_norm_inference eps<0",
        lambda e: norm.batch_norm_inference(X43, STATE, ONES, ZEROS, eps=e),
        "eps",
        ">= 0",
    ),
    Case(
        "cross_sample_jacobian output",
        lambda: norm.cross_sample_jacobian(lambda x: x.sum(axis=0), jnp.ones((3, 2))),
        ValueError,
        r"norm_fn\(x\) must have shape \(3, \.\.\.\)",
    ),
    Case(
        "cross_sample_jacobian scalar x",
        lambda: norm.cross_sample_jacobian(lambda x: x, jnp.array(1.0)),
        ValueError,
        r"x must have shape \(\*, \.\.\.\)",
    ),
    Case(
        "cross_sample_block_norms shape",
        lambda: norm.cross_sample_block_norms(jnp.ones((2, 3, 4))),
        ValueError,
        r"jac must have shape \(N, N, \.\.\.\)",
    ),
]

_BATCH_APPLY = lambda w, xb: xb @ w  # noqa: E731


ATTRIBUTION = [
    Case(
        "batch_integrated_gradients float targets",
        lambda: attribution.batch_integrated_gradients(
            _BATCH_APPLY, jnp.ones((3, 2)), jnp.ones((4, 3)), jnp.zeros(4)
        ),
        TypeError,
        "targets must have a integer dtype",
    ),
    Case(
        "batch_integrated_gradients targets of another batch",
        lambda: attribution.batch_integrated_gradients(
            _BATCH_APPLY, jnp.ones((3, 2)), jnp.ones((4, 3)), jnp.zeros(5, int)
        ),
        ValueError,
        r"targets must have shape \(4,\), got \(5,\)",
    ),
    Case(
        "batch_integrated_gradients baseline of another shape",
        lambda: attribution.batch_integrated_gradients(
            _BATCH_APPLY,
            jnp.ones((3, 2)),
            jnp.ones((4, 3)),
            jnp.zeros(4, int),
            baseline=jnp.zeros((4, 2)),
        ),
        ValueError,
        r"baseline must have shape \(4, 3\)",
    ),
    Case(
        "batch_integrated_gradients chunk_size=0",
        lambda: attribution.batch_integrated_gradients(
            _BATCH_APPLY,
            jnp.ones((3, 2)),
            jnp.ones((4, 3)),
            jnp.zeros(4, int),
            chunk_size=0,
        ),
        ValueError,
        "chunk_size must be an integer >= 1",
    ),
    Case(
        "quadrature_rule method",
        lambda: attribution.quadrature_rule("simpson", 4),
        ValueError,
        "method must be one of 'riemann_left', 'riemann_right', 'riemann_middle', "
        "'riemann_trapezoid', 'gausslegendre'; got 'simpson'",
    ),
    Case(
        "quadrature_rule trapezoid steps=1",
        lambda: attribution.quadrature_rule("riemann_trapezoid", 1),
        ValueError,
        "steps must be an integer >= 2, got 1",
    ),
    Case(
        "integrated_gradients method",
        lambda: attribution.integrated_gradients(_square, X3, method="simpson"),
        ValueError,
        "method must be one of",
    ),
    Case(
        "integrated_gradients steps=0",
        lambda: attribution.integrated_gradients(_square, X3, steps=0),
        ValueError,
        "steps must be an integer >= 1, got 0",
    ),
    Case(
        "integrated_gradients steps float",
        lambda: attribution.integrated_gradients(_square, X3, steps=2.0),
        TypeError,
        "steps must be an integer",
    ),
    Case(
        "integrated_gradients baseline shape",
        lambda: attribution.integrated_gradients(_square, X3, baseline=jnp.zeros(4)),
        ValueError,
        r"baseline must have shape \(3,\)",
    ),
    Case(
        "integrated_gradients vector f",
        lambda: attribution.integrated_gradients(lambda z: z, X3),
        ValueError,
        r"f must return a scalar, got shape \(3,\); select one output",
    ),
    Case(
        "integrated_gradients chunk_size=0",
        lambda: attribution.integrated_gradients(_square, X3, chunk_size=0),
        ValueError,
        "chunk_size must be an integer >= 1",
    ),
    Case(
        "integrated_gradients complex",
        lambda: attribution.integrated_gradients(_square, X3.astype(jnp.complex64)),
        TypeError,
        "x must be real",
    ),
    Case(
        "path_integrated_gradients integer path",
        lambda: attribution.path_integrated_gradients(_square, lambda a: jnp.arange(3)),
        TypeError,
        r"path\(alpha\) must have a floating dtype",
    ),
    Case(
        "completeness_delta attributions shape",
        lambda: attribution.completeness_delta(_square, X3, jnp.ones(2)),
        ValueError,
        r"attributions must have shape \(3,\)",
    ),
    Case(
        "completeness_delta baseline stack",
        lambda: attribution.completeness_delta(
            _square, X3, X3, baseline=jnp.ones((2, 4))
        ),
        ValueError,
        r"baseline must have shape \(\*, 3\)",
    ),
    *_values(
        "integrated_gradients_to_tolerance rtol",
        lambda r: attribution.integrated_gradients_to_tolerance(_square, X3, rtol=r),
        "rtol",
        "> 0",
    ),
    Case(
        "integrated_gradients_to_tolerance max_steps",
        lambda: attribution.integrated_gradients_to_tolerance(
            _square, X3, initial_steps=8, max_steps=4
        ),
        ValueError,
        "max_steps must be an integer >= 8, got 4",
    ),
    *_values(
        "blurred_baseline sigma",
        lambda s: attribution.blurred_baseline(X3, sigma=s),
        "sigma",
        "> 0",
    ),
    Case(
        "blurred_baseline axes",
        lambda: attribution.blurred_baseline(X3, axes=(1,)),
        ValueError,
        r"axes \(1,\) out of range .* allowed are -1\.\.0",
    ),
    Case(
        "uniform_baselines num_samples=0",
        lambda: attribution.uniform_baselines(jax.random.key(0), X3, num_samples=0),
        ValueError,
        "num_samples must be an integer >= 1, got 0",
    ),
    Case(
        "uniform_baselines empty interval",
        lambda: attribution.uniform_baselines(
            jax.random.key(0), X3, num_samples=2, minval=1.0, maxval=1.0
        ),
        ValueError,
        "maxval must be > minval",
    ),
    Case(
        "expected_integrated_gradients baselines shape",
        lambda: attribution.expected_integrated_gradients(_square, X3, jnp.zeros(3)),
        ValueError,
        r"baselines must have shape \(\*, 3\)",
    ),
    Case(
        "gradient_x_input vector f",
        lambda: attribution.gradient_x_input(lambda z: z, X3),
        ValueError,
        "f must return a scalar",
    ),
    Case(
        "deletion_curve num_points float",
        lambda: attribution.deletion_curve(_square, X3, X3, num_points=1.5),
        TypeError,
        "num_points must be an integer",
    ),
    Case(
        "deletion_curve num_points too many",
        lambda: attribution.deletion_curve(_square, X3, X3, num_points=4),
        ValueError,
        "num_points must be <= 3",
    ),
    Case(
        "deletion_curve attributions shape",
        lambda: attribution.deletion_curve(_square, X3, jnp.ones(2)),
        ValueError,
        r"attributions must have shape \(3,\)",
    ),
]

GRADCHECK = [
    Case(
        "derivatives_by_mode vector f",
        lambda: gradcheck.derivatives_by_mode(jnp.sin, X3),
        ValueError,
        r"f must return a scalar, got shape \(3,\)",
    ),
    Case(
        "derivatives_by_mode complex x",
        lambda: gradcheck.derivatives_by_mode(jnp.sin, 1j),
        TypeError,
        "x must be real",
    ),
    Case(
        "numerical_jacobian method",
        lambda: gradcheck.numerical_jacobian(jnp.sin, X3, method="sideways"),
        ValueError,
        "method must be one of 'central', 'forward', 'backward'; got 'sideways'",
    ),
    *_values(
        "numerical_jacobian eps",
        lambda e: gradcheck.numerical_jacobian(jnp.sin, X3, eps=e),
        "eps",
        "> 0",
    ),
    Case(
        "numerical_jacobian integer x",
        lambda: gradcheck.numerical_jacobian(jnp.sin, jnp.zeros(2, jnp.int32)),
        TypeError,
        "x must have a floating dtype, got int32",
    ),
    Case(
        "numerical_jacobian empty x",
        lambda: gradcheck.numerical_jacobian(jnp.sin, {}),
        ValueError,
        "x must hold at least one array",
    ),
    Case(
        "numerical_jacobian dict output",
        lambda: gradcheck.numerical_jacobian(lambda x: {"y": x}, X3),
        TypeError,
        "f must return an array",
    ),
    Case(
        "numerical_grad vector f",
        lambda: gradcheck.numerical_grad(jnp.sin, X3),
        ValueError,
        r"f must return a scalar, got shape \(3,\); use numerical_jacobian",
    ),
    Case(
        "max_abs_error structures",
        lambda: gradcheck.max_abs_error({"a": 1.0}, {"b": 1.0}),
        ValueError,
        "different structures",
    ),
    Case(
        "max_rel_error shapes",
        lambda: gradcheck.max_rel_error(jnp.zeros(2), jnp.zeros(3)),
        ValueError,
        r"shapes \(2,\) and \(3,\)",
    ),
    Case(
        "compare_rules no primals",
        lambda: gradcheck.compare_rules(jnp.sin, jnp.sin, key=jax.random.key(0)),
        ValueError,
        "primals must hold at least one argument",
    ),
    Case(
        "compare_rules integer primal",
        lambda: gradcheck.compare_rules(
            jnp.sin, jnp.sin, jnp.arange(2), key=jax.random.key(0)
        ),
        TypeError,
        r"primals\[0\] must have a floating dtype",
    ),
]

RETRIEVAL = {"memory_size": 4, "dim": 3, "train_size": 8, "test_size": 2}
DATA = [
    Case(
        "retrieval_task memory_size=0",
        lambda: data.retrieval_task(
            jax.random.key(0), noise=0.1, **{**RETRIEVAL, "memory_size": 0}
        ),
        ValueError,
        "memory_size must be an integer >= 1",
    ),
    *_values(
        "retrieval_task noise<0",
        lambda n: data.retrieval_task(jax.random.key(0), noise=n, **RETRIEVAL),
        "noise",
        ">= 0",
    ),
    Case(
        "channel_features no channel axis",
        lambda: data.channel_features(jax.random.key(0), ()),
        ValueError,
        "shape must have at least one axis",
    ),
]

CASES: list[Case] = [
    *ACTIVATIONS,
    *LOSSES,
    *ATTENTION,
    *NORMALIZATION,
    *ATTRIBUTION,
    *GRADCHECK,
    *DATA,
]
