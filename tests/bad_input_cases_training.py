"""Bad inputs for the training functions of the library (see ``test_bad_inputs.py``).

Regularizers, robustness evaluation and ``training.fit``: every case is cheap (the
checks run before anything is traced or compiled).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from bad_input_case import Case

from chainlab import distributed, regularizers, robustness, training
from chainlab.errors import ChainlabError

KEY = jax.random.key(0)
X = jnp.ones((4, 3))
Y = jnp.zeros(4, jnp.int32)
W = jnp.ones((3, 2))


def _linear(w, x):
    return x @ w


def _f(x):
    return jnp.sin(x)


def _net(**shapes):
    """A one-hidden-layer network (D=3, H=4, C=2) with some shapes replaced."""
    arrays = {"w1": (3, 4), "b1": (4,), "w2": (4, 2), "b2": (2,)} | shapes
    return regularizers.OneHiddenLayer(**{k: jnp.ones(s) for k, s in arrays.items()})


DATA = (np.ones((8, 3)), np.zeros(8, np.int32))


def _fit(data=DATA, **options):
    settings = {"steps": 1, "batch_size": 4} | options
    loss = training.classification_loss(_linear)
    return training.fit(loss, W, optax.sgd(0.1), data, **settings)


REGULARIZERS = [
    Case(
        "jacobian_frobenius_sq method=hutchinson",
        lambda: regularizers.jacobian_frobenius_sq(_f, X[0], method="hutchinson"),
        ValueError,
        "method must be one of 'exact', 'projection', 'forward_projection'",
    ),
    Case(
        "jacobian_frobenius_sq projection without key",
        lambda: regularizers.jacobian_frobenius_sq(_f, X[0], method="projection"),
        ValueError,
        "key is required by method='projection'",
    ),
    Case(
        "jacobian_frobenius_sq num_projections=0",
        lambda: regularizers.jacobian_frobenius_sq(
            _f, X[0], method="projection", key=KEY, num_projections=0
        ),
        ValueError,
        "num_projections must be an integer >= 1",
    ),
    Case(
        "jacobian_frobenius_sq num_projections=1.5",
        lambda: regularizers.jacobian_frobenius_sq(_f, X[0], num_projections=1.5),
        TypeError,
        "num_projections must be an integer >= 1",
    ),
    Case(
        "jacobian_frobenius_sq complex x",
        lambda: regularizers.jacobian_frobenius_sq(_f, jnp.ones(3, jnp.complex64)),
        TypeError,
        "x must be real",
    ),
    Case(
        "jacobian_frobenius_sq f returns a tuple",
        lambda: regularizers.jacobian_frobenius_sq(lambda x: (x, x), X[0]),
        TypeError,
        "f must return a single array",
    ),
    Case(
        "jacobian_frobenius_sq f returns integers",
        lambda: regularizers.jacobian_frobenius_sq(
            lambda x: jnp.round(x).astype(jnp.int32), X[0]
        ),
        TypeError,
        "f\\(x\\) must be a real floating-point array",
    ),
    Case(
        "estimator_variance jacobian of rank 1",
        lambda: regularizers.estimator_variance(jnp.ones(3), method="projection"),
        ValueError,
        "jacobian must have rank 2",
    ),
    Case(
        "estimator_samples num_draws=0",
        lambda: regularizers.estimator_samples(
            _f, X[0], method="projection", key=KEY, num_draws=0
        ),
        ValueError,
        "num_draws must be an integer >= 1",
    ),
    Case(
        "estimator_samples method=exact",
        lambda: regularizers.estimator_samples(
            _f, X[0], method="exact", key=KEY, num_draws=2
        ),
        ValueError,
        "method must be one of 'projection', 'forward_projection'",
    ),
    Case(
        "estimator_study num_projections=(1, 0)",
        lambda: regularizers.estimator_study(
            _f, X, method="projection", key=KEY, num_draws=2, num_projections=(1, 0)
        ),
        ValueError,
        "num_projections must be an integer >= 1",
    ),
    Case(
        "jacobian_penalty without a batch of outputs",
        lambda: regularizers.jacobian_penalty(lambda p, x: jnp.sum(x), None, X),
        ValueError,
        "apply must map a batch of 4 to a batch of outputs",
    ),
    Case(
        "jacobian_penalty x without batch axis",
        lambda: regularizers.jacobian_penalty(_linear, W, jnp.ones(())),
        ValueError,
        "x needs a leading batch axis",
    ),
    Case(
        "with_jacobian_penalty strength=-1",
        lambda: regularizers.with_jacobian_penalty(
            lambda p, b, k: 0.0, _linear, strength=-1.0
        ),
        ValueError,
        "strength must be >= 0",
    ),
    Case(
        "with_jacobian_penalty strength=array(-1)",
        lambda: regularizers.with_jacobian_penalty(
            lambda p, b, k: 0.0, _linear, strength=jnp.array(-1.0)
        ),
        ValueError,
        "strength must be >= 0",
    ),
    Case(
        "with_jacobian_penalty strength=nan",
        lambda: regularizers.with_jacobian_penalty(
            lambda p, b, k: 0.0, _linear, strength=float("nan")
        ),
        ValueError,
        "strength must be >= 0",
    ),
    Case(
        "with_jacobian_penalty method=random",
        lambda: regularizers.with_jacobian_penalty(
            lambda p, b, k: 0.0, _linear, strength=1.0, method="random"
        ),
        ValueError,
        "method must be one of",
    ),
    Case(
        "input_gradient_norm of a vector function",
        lambda: regularizers.input_gradient_norm(_f, X[0]),
        ValueError,
        "f must return a scalar",
    ),
    Case(
        "one_hidden_layer x of the wrong size",
        lambda: regularizers.one_hidden_layer(_net(), jnp.ones(5)),
        ValueError,
        "x must have shape \\(3,\\), got \\(5,\\)",
    ),
    Case(
        "one_hidden_layer w2 (out, in) instead of (in, out)",
        lambda: regularizers.one_hidden_layer(_net(w2=(2, 4)), X[0]),
        ValueError,
        "w2 must have shape \\(4, \\*\\), got \\(2, 4\\)",
    ),
    Case(
        "one_hidden_layer b1 of the wrong size",
        lambda: regularizers.one_hidden_layer_jacobian(_net(b1=(3,)), X[0]),
        ValueError,
        "b1 must have shape \\(4,\\), got \\(3,\\)",
    ),
    Case(
        "one_hidden_layer activation='tanh'",
        lambda: regularizers.one_hidden_layer_penalty_grad(
            _net(), X[0], activation="tanh"
        ),
        TypeError,
        "activation must be a callable",
    ),
    Case(
        "OneHiddenLayer.from_layers with three layers",
        lambda: regularizers.OneHiddenLayer.from_layers([{}, {}, {}]),
        ValueError,
        "layers must be the two layers of a one-hidden-layer network, got 3",
    ),
]

ROBUSTNESS = [
    Case(
        "fgsm epsilon=-0.1",
        lambda: robustness.fgsm(_linear, W, X, Y, epsilon=-0.1),
        ValueError,
        "epsilon must be >= 0",
    ),
    Case(
        "fgsm epsilon=array(-0.1)",
        lambda: robustness.fgsm(_linear, W, X, Y, epsilon=jnp.array(-0.1)),
        ValueError,
        "epsilon must be >= 0",
    ),
    Case(
        "fgsm epsilon=inf",
        lambda: robustness.fgsm(_linear, W, X, Y, epsilon=float("inf")),
        ValueError,
        "epsilon must be finite",
    ),
    Case(
        "fgsm epsilon of shape (2,)",
        lambda: robustness.fgsm(_linear, W, X, Y, epsilon=jnp.ones(2)),
        ValueError,
        "epsilon must be a scalar \\(rank 0\\)",
    ),
    Case(
        "fgsm norm=l1",
        lambda: robustness.fgsm(_linear, W, X, Y, epsilon=0.1, norm="l1"),
        ValueError,
        "norm must be one of 'linf', 'l2'",
    ),
    Case(
        "fgsm float labels",
        lambda: robustness.fgsm(_linear, W, X, jnp.zeros(4), epsilon=0.1),
        TypeError,
        "y must have a integer dtype",
    ),
    Case(
        "fgsm labels of the wrong length",
        lambda: robustness.fgsm(_linear, W, X, Y[:3], epsilon=0.1),
        ValueError,
        "y must have shape \\(4,\\), got \\(3,\\)",
    ),
    Case(
        "fgsm bounds=(1, 0)",
        lambda: robustness.fgsm(_linear, W, X, Y, epsilon=0.1, bounds=(1.0, 0.0)),
        ValueError,
        "bounds must be None or \\(low, high\\) with low < high",
    ),
    Case(
        "pgd steps=0",
        lambda: robustness.pgd(_linear, W, X, Y, epsilon=0.1, steps=0),
        ValueError,
        "steps must be an integer >= 1",
    ),
    Case(
        "pgd step_size=0",
        lambda: robustness.pgd(_linear, W, X, Y, epsilon=0.1, steps=3, step_size=0.0),
        ValueError,
        "step_size must be > 0",
    ),
    Case(
        "pgd epsilon=nan",
        lambda: robustness.pgd(_linear, W, X, Y, epsilon=float("nan"), steps=3),
        ValueError,
        "epsilon must be >= 0",
    ),
    Case(
        "noise_accuracy sigma=-1",
        lambda: robustness.noise_accuracy(_linear, W, X, Y, sigma=-1.0, key=KEY),
        ValueError,
        "sigma must be >= 0",
    ),
    Case(
        "noise_accuracy draws=0",
        lambda: robustness.noise_accuracy(
            _linear, W, X, Y, sigma=0.1, key=KEY, draws=0
        ),
        ValueError,
        "draws must be an integer >= 1",
    ),
    Case(
        "accuracy x without batch axis",
        lambda: robustness.accuracy(_linear, W, jnp.ones(()), Y),
        ValueError,
        "x must have a leading batch axis",
    ),
    Case(
        "accuracy_curves negative epsilon in the grid",
        lambda: robustness.accuracy_curves(
            _linear, W, X, Y, sigmas=(), epsilons=(0.1, -0.1), key=KEY
        ),
        ValueError,
        "epsilon must be >= 0",
    ),
]

FIT = [
    Case(
        "fit batch_size=0",
        lambda: _fit(batch_size=0),
        ValueError,
        "batch_size must be in 1..8",
    ),
    Case(
        "fit batch_size above the dataset size",
        lambda: _fit(batch_size=16),
        ValueError,
        "batch_size must be in 1..8",
    ),
    Case(
        "fit data of different lengths",
        lambda: _fit(data=(np.ones((8, 3)), np.zeros(7, np.int32))),
        ValueError,
        "data arrays disagree on their leading axis",
    ),
    Case(
        "fit select_best without eval_fn",
        lambda: _fit(select_best="loss"),
        ValueError,
        "select_best needs eval_fn and eval_every > 0",
    ),
    Case(
        "fit checkpoint_every without checkpoint_dir",
        lambda: _fit(checkpoint_every=1),
        ValueError,
        "checkpoint_every needs a checkpoint_dir",
    ),
    Case(
        "fit unknown compiler option",
        lambda: _fit(compiler_options={"xla_no_such_option": "1"}),
        ValueError,
        "compiler_options .* are not accepted",
    ),
]

STEP = [
    Case(
        "make_step unknown compiler option",
        lambda: training.make_step(
            training.classification_loss(_linear),
            optax.sgd(0.1),
            compiler_options={"xla_no_such_option": "1"},
        ),
        ValueError,
        "compiler_options .* are not accepted",
    ),
    Case(
        "fit steps=0",
        lambda: _fit(steps=0),
        ValueError,
        "steps must be an integer >= 1",
    ),
    Case(
        "fit steps=2.5", lambda: _fit(steps=2.5), TypeError, "steps must be an integer"
    ),
    Case(
        "fit log_every=0",
        lambda: _fit(log_every=0),
        ValueError,
        "log_every must be an integer >= 1",
    ),
    Case(
        "fit eval_every=-1",
        lambda: _fit(eval_every=-1),
        ValueError,
        "eval_every must be an integer >= 0",
    ),
    Case(
        "fit checkpoint_every=-1",
        lambda: _fit(checkpoint_every=-1),
        ValueError,
        "checkpoint_every must be an integer >= 0",
    ),
]

STUDIES = [
    Case(
        "penalty_relative_std method=hutchinson",
        lambda: regularizers.penalty_relative_std(_linear, W, X, method="hutchinson"),
        ValueError,
        "method must be one of",
    ),
    Case(
        "penalty_relative_std num_projections=0",
        lambda: regularizers.penalty_relative_std(
            _linear, W, X, method="projection", num_projections=0
        ),
        ValueError,
        "num_projections must be an integer >= 1",
    ),
    Case(
        "penalty_relative_std x without batch axis",
        lambda: regularizers.penalty_relative_std(
            _linear, W, jnp.ones(()), method="projection"
        ),
        ValueError,
        "x needs a leading batch axis",
    ),
    Case(
        "penalty_relative_std complex x",
        lambda: regularizers.penalty_relative_std(
            _linear, W, jnp.ones((4, 3), jnp.complex64), method="projection"
        ),
        TypeError,
        "x must be real",
    ),
    Case(
        "one_hidden_layer_mean_penalty_grad method=finite_differences",
        lambda: regularizers.one_hidden_layer_mean_penalty_grad(
            _net(), X, method="finite_differences"
        ),
        ValueError,
        "method must be one of 'closed_form', 'autodiff'",
    ),
    Case(
        "one_hidden_layer_mean_penalty_grad one input without batch axis",
        lambda: regularizers.one_hidden_layer_mean_penalty_grad(_net(), X[0]),
        ValueError,
        r"xs must have rank 2, got shape \(3,\)",
    ),
    Case(
        "one_hidden_layer_mean_penalty_grad inputs of the wrong width",
        lambda: regularizers.one_hidden_layer_mean_penalty_grad(
            _net(), jnp.ones((4, 5)), method="autodiff"
        ),
        ValueError,
        r"x must have shape \(3,\), got \(5,\)",
    ),
    Case(
        "one_hidden_layer_mean_penalty_grad mismatched b1",
        lambda: regularizers.one_hidden_layer_mean_penalty_grad(_net(b1=(3,)), X),
        ValueError,
        r"b1 must have shape \(4,\), got \(3,\)",
    ),
    Case(
        "sensitivity labels of another batch size",
        lambda: robustness.sensitivity(_linear, W, X, jnp.zeros(3, jnp.int32)),
        ValueError,
        r"y must have shape \(4,\), got \(3,\)",
    ),
    Case(
        "sensitivity float labels",
        lambda: robustness.sensitivity(_linear, W, X, jnp.zeros(4)),
        TypeError,
        "y must have a integer dtype",
    ),
]

EARLY_STOPPING = [
    Case(
        "fit patience=0",
        lambda: _fit(patience=0),
        ValueError,
        "patience must be an integer >= 1",
    ),
    Case(
        "fit patience without select_best",
        lambda: _fit(patience=3),
        ValueError,
        "patience needs select_best",
    ),
    Case(
        "fit_to_data val_fraction=1",
        lambda: training.fit_to_data(
            lambda p, x: x[:, 0] * p, jnp.ones(()), jnp.ones((8, 2)), val_fraction=1.0
        ),
        ValueError,
        r"val_fraction must be in \[0.0, 1.0\), got 1.0",
    ),
]

DISTRIBUTED = [
    Case(
        "distributed.initialize with a coordinator only",
        lambda: distributed.initialize("localhost:1234"),
        ChainlabError,
        "coordinator, num_processes and process_id go together",
    ),
    Case(
        "distributed.initialize without a process id",
        lambda: distributed.initialize("localhost:1234", 2),
        ChainlabError,
        "coordinator, num_processes and process_id go together",
    ),
]

CASES: list[Case] = [
    *REGULARIZERS,
    *ROBUSTNESS,
    *FIT,
    *STEP,
    *STUDIES,
    *EARLY_STOPPING,
    *DISTRIBUTED,
]
