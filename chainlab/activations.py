"""Piecewise activations with explicit, documented derivatives at their kinks.

A kink is a point where the left and right derivatives differ, so autodiff has to pick
one number. JAX's built-ins pick differently: ``jax.nn.relu`` uses 0 at x = 0, while
``jnp.maximum(x, 0)`` splits ties and gives 1/2; ``jnp.max`` likewise shares the
gradient among all tied entries. Here each kink has one stated convention, implemented
as a :func:`jax.custom_jvp` rule, so it holds in forward mode (``jax.jvp``,
``jax.jacfwd``), reverse mode (``jax.grad``, ``jax.vjp``), and nested derivatives
(``jax.hessian``, Jacobian-of-gradient), under ``jax.jit`` and ``jax.vmap``.

Conventions at the kink:

- ``relu``: derivative 0 at x = 0 (the left derivative; same as ``jax.nn.relu``).
  ``relu_reverse_only`` is the same rule as a ``custom_vjp``, the reverse-mode-only
  contrast: it fails in forward mode.
- ``leaky_relu``: derivative ``slope`` at x = 0 (the left derivative), so ``slope=0``
  is exactly :func:`relu`, derivative included.
- ``elu``: ``side="right"`` gives 1 at x = 0, ``side="left"`` gives ``alpha``.
- ``maxout``: the gradient goes to the winning piece only; a tie goes to the lowest
  piece index and is never split.

Integer and boolean inputs are promoted to the default floating dtype; complex inputs
are refused (a kink has no meaning there). The knobs ``slope`` and ``alpha`` are
inputs like ``x`` (positional, so ``jax.grad(f, argnums=1)`` learns them, as PReLU
does); their values are checked whenever they are concrete, and under ``jax.jit`` (a
traced knob) they are not checked (see :mod:`chainlab.validation`). Shapes are checked
at trace time, under ``jit`` too.
"""

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from chainlab.validation import (
    as_real_float,
    check_broadcastable,
    check_choice,
    check_finite,
    check_nonnegative,
    check_rank,
    check_shape,
)

ELU_SIDES = ("right", "left")

# --- relu ---------------------------------------------------------------------------


@jax.custom_jvp
def _relu(x: jax.Array) -> jax.Array:
    return jnp.where(x > 0, x, jnp.zeros_like(x))


@_relu.defjvp
def _relu_jvp(primals, tangents):
    (x,), (tx,) = primals, tangents
    # d relu / dx = 1 if x > 0 else 0, so the kink x == 0 gets 0.
    return _relu(x), jnp.where(x > 0, tx, jnp.zeros_like(tx))


def relu(x: ArrayLike) -> jax.Array:
    r"""Rectified linear unit, ``max(x, 0)``, with derivative 0 at the kink.

    .. math::
        \mathrm{relu}(x) = \max(x, 0), \qquad
        \mathrm{relu}'(x) = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}

    The value at x = 0 is the left derivative, the convention of ``jax.nn.relu``
    (``jnp.maximum(x, 0)`` instead gives 1/2 there). The second derivative is 0
    everywhere. Reference: Nair & Hinton, "Rectified Linear Units Improve Restricted
    Boltzmann Machines", ICML 2010.

    Args:
      x: any array.

    Returns:
      An array of the shape of ``x``.

    Example:
      >>> import jax
      >>> from chainlab.activations import relu
      >>> float(relu(-2.0)), float(relu(3.0))
      (0.0, 3.0)
      >>> float(jax.grad(relu)(0.0)), float(jax.grad(relu)(1.0))
      (0.0, 1.0)
    """
    return _relu(as_real_float("x", x))


@jax.custom_vjp
def _relu_reverse_only(x: jax.Array) -> jax.Array:
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def _relu_reverse_only_fwd(x):
    return _relu_reverse_only(x), x  # keep x for the backward pass


def _relu_reverse_only_bwd(x, g):
    return (jnp.where(x > 0, g, jnp.zeros_like(g)),)


_relu_reverse_only.defvjp(_relu_reverse_only_fwd, _relu_reverse_only_bwd)


def relu_reverse_only(x: ArrayLike) -> jax.Array:
    """:func:`relu` with its kink rule as a ``custom_vjp``: reverse mode only.

    The same values and the same reverse-mode derivative as :func:`relu` (1 for
    x > 0, 0 for x <= 0, so 0 at the kink), but the rule is a :func:`jax.custom_vjp`,
    which defines only the pullback ``g -> g * [x > 0]``. It is the contrast to the
    ``custom_jvp`` rules of this module, kept to show what that choice costs:
    ``jax.grad``, ``jax.vjp``, ``jax.jacrev`` and ``jax.jacrev(jax.grad(f))`` work;
    forward mode (``jax.jvp``, ``jax.jacfwd``) and forward-over-reverse
    (``jax.hessian``, ``jax.jacfwd(jax.grad(f))``) raise JAX's ``TypeError`` (the
    rule's forward pass calls the ``custom_vjp`` itself). Use :func:`relu` in models.

    Args:
      x: any array.

    Returns:
      An array of the shape of ``x``.

    Example:
      >>> import jax
      >>> from chainlab.activations import relu_reverse_only
      >>> grad = jax.grad(relu_reverse_only)
      >>> float(grad(0.0)), float(grad(2.0))
      (0.0, 1.0)
      >>> try:
      ...     jax.jvp(relu_reverse_only, (0.0,), (1.0,))
      ... except TypeError as error:
      ...     print(str(error).splitlines()[0])
      can't apply forward-mode autodiff (jvp) to a custom_vjp function.
    """
    return _relu_reverse_only(as_real_float("x", x))


# --- leaky relu ---------------------------------------------------------------------


@jax.custom_jvp
def _leaky_relu(x: jax.Array, slope: jax.Array) -> jax.Array:
    return jnp.where(x > 0, x, slope * x)


@_leaky_relu.defjvp
def _leaky_relu_jvp(primals, tangents):
    (x, slope), (tx, tslope) = primals, tangents
    # d/dx = 1 if x > 0 else slope (so the kink x == 0 gets slope);
    # d/dslope = 0 if x > 0 else x.
    tangent = jnp.where(x > 0, tx, slope * tx + x * tslope)
    return _leaky_relu(x, slope), tangent


def leaky_relu(x: ArrayLike, slope: ArrayLike = 0.01) -> jax.Array:
    r"""Leaky ReLU with derivative ``slope`` at the kink.

    .. math::
        f(x) = \begin{cases} x & x > 0 \\ s\,x & x \le 0 \end{cases}, \qquad
        \partial_x f = \begin{cases} 1 & x > 0 \\ s & x \le 0 \end{cases}, \qquad
        \partial_s f = \begin{cases} 0 & x > 0 \\ x & x \le 0 \end{cases}

    At x = 0 the left derivative ``slope`` is used, so ``slope=0`` reproduces
    :func:`relu` exactly, derivative included (``jax.nn.leaky_relu`` uses 1 there).
    ``slope`` is differentiable, so it can be learned (PReLU). Reference: Maas, Hannun &
    Ng, "Rectifier Nonlinearities Improve Neural Network Acoustic Models", ICML 2013.

    Args:
      x: any array.
      slope: the slope for x <= 0, any finite real (negative slopes are allowed); a
        scalar or an array broadcastable to ``x`` (same rank, or a scalar). Checked
        finite when concrete; a traced slope (under ``jit``) is not checked.

    Returns:
      An array of the broadcast shape of ``x`` and ``slope``.

    Example:
      >>> import jax
      >>> from chainlab.activations import leaky_relu
      >>> round(float(leaky_relu(-2.0, 0.1)), 4)
      -0.2
      >>> round(float(jax.grad(leaky_relu)(0.0, 0.1)), 4)
      0.1
    """
    x = as_real_float("x", x)
    slope = as_real_float("slope", slope)
    check_broadcastable("slope", slope, x.shape)
    check_finite("slope", slope)
    return _leaky_relu(x, slope)


# --- elu ----------------------------------------------------------------------------


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _elu(x: jax.Array, alpha: jax.Array, right: bool) -> jax.Array:
    # The negative branch sees min(x, 0), so expm1 never overflows in the unused branch.
    negative = jnp.where(x > 0, jnp.zeros_like(x), x)
    return jnp.where(x > 0, x, alpha * jnp.expm1(negative))


@_elu.defjvp
def _elu_jvp(right: bool, primals, tangents):
    (x, alpha), (tx, talpha) = primals, tangents
    # d/dx = 1 for x > 0, alpha * exp(x) for x < 0; at x == 0 the side decides:
    # right -> 1, left -> alpha * exp(0) = alpha.  d/dalpha = expm1(x) for x <= 0.
    # exp sees min(x, 0) so that nested derivatives never form 0 * inf.
    negative = jnp.where(x > 0, jnp.zeros_like(x), x)
    on_linear_piece = x >= 0 if right else x > 0
    left_tangent = alpha * jnp.exp(negative) * tx + jnp.expm1(negative) * talpha
    return _elu(x, alpha, right), jnp.where(on_linear_piece, tx, left_tangent)


def elu(
    x: ArrayLike,
    alpha: ArrayLike = 1.0,
    *,
    side: Literal["right", "left"] = "right",
) -> jax.Array:
    r"""Exponential linear unit with a chosen one-sided derivative at x = 0.

    .. math::
        f(x) = \begin{cases} x & x > 0 \\ \alpha\,(e^{x} - 1) & x \le 0 \end{cases},
        \qquad
        f'(x) = \begin{cases} 1 & x > 0 \\ \alpha\,e^{x} & x < 0 \end{cases}

    At x = 0 the right derivative is 1 and the left derivative is alpha; they agree only
    for alpha = 1. ``side="right"`` uses 1 and ``side="left"`` uses alpha. The choice
    carries into nested derivatives: the second derivative at 0 is 0 (right) or alpha
    (left). ``jax.nn.elu`` uses the left value. ``alpha`` is differentiable. Reference:
    Clevert, Unterthiner & Hochreiter, "Fast and Accurate Deep Network Learning by
    Exponential Linear Units (ELUs)", ICLR 2016.

    Args:
      x: any array.
      alpha: the saturation value for x -> -inf is ``-alpha``, ``alpha >= 0``; a
        scalar or an array broadcastable to ``x`` (same rank, or a scalar). Checked
        when concrete; a traced alpha (under ``jit``) is not checked.
      side: ``"right"`` or ``"left"``, the one-sided derivative used at x == 0.

    Returns:
      An array of the broadcast shape of ``x`` and ``alpha``.

    Example:
      >>> import jax
      >>> from chainlab.activations import elu
      >>> round(float(elu(-1.0, 0.5)), 4)
      -0.3161
      >>> right = jax.grad(lambda x: elu(x, 0.5, side="right"))
      >>> left = jax.grad(lambda x: elu(x, 0.5, side="left"))
      >>> float(right(0.0)), float(left(0.0))
      (1.0, 0.5)
    """
    check_choice("side", side, ELU_SIDES)
    x = as_real_float("x", x)
    alpha = as_real_float("alpha", alpha)
    check_broadcastable("alpha", alpha, x.shape)
    check_nonnegative("alpha", alpha)
    return _elu(x, alpha, side == "right")


# --- maxout -------------------------------------------------------------------------


@jax.custom_jvp
def _max_over_pieces(z: jax.Array) -> jax.Array:
    """``max(z, axis=-2)`` for z ``(..., k, d_out)``."""
    return jnp.max(z, axis=-2)


@_max_over_pieces.defjvp
def _max_over_pieces_jvp(primals, tangents):
    (z,), (tz,) = primals, tangents
    # The tangent of the winning piece only; argmax returns the first maximum, so a tie
    # goes to the lowest piece index and is never split (jnp.max would share it).
    winner = jnp.argmax(z, axis=-2)[..., None, :]
    tangent = jnp.take_along_axis(tz, winner, axis=-2)[..., 0, :]
    return _max_over_pieces(z), tangent


def maxout(x: ArrayLike, weight: ArrayLike, bias: ArrayLike) -> jax.Array:
    r"""Maxout unit: the maximum of k affine pieces, gradient to the winner only.

    .. math::
        z_{p j} = \sum_i x_i W_{p i j} + b_{p j}, \qquad
        y_j = \max_p z_{p j}, \qquad
        \frac{\partial y_j}{\partial z_{p j}} = [p = p^*_j],
        \quad p^*_j = \min \operatorname{arg\,max}_p z_{p j}

    So per output unit only the winning piece's weights and bias receive gradient, and
    when several pieces tie the lowest index wins (the gradient is never split, unlike
    ``jnp.max``). Reference: Goodfellow, Warde-Farley, Mirza, Courville & Bengio,
    "Maxout Networks", ICML 2013.

    Args:
      x: inputs ``(..., d_in)``.
      weight: piece weights ``(k, d_in, d_out)``.
      bias: piece biases ``(k, d_out)``.

    Returns:
      ``(..., d_out)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from chainlab.activations import maxout
      >>> w = jnp.array([[[1.0]], [[-1.0]]])  # k=2 pieces of x -> x and x -> -x: |x|
      >>> b = jnp.zeros((2, 1))
      >>> float(maxout(jnp.array([-3.0]), w, b)[0])
      3.0
      >>> # at x = 0 both pieces tie; piece 0 gets the whole gradient
      >>> jax.grad(lambda b: maxout(jnp.array([0.0]), w, b)[0])(b).ravel().tolist()
      [1.0, 0.0]
    """
    x = as_real_float("x", x)
    weight = as_real_float("weight", weight)
    bias = as_real_float("bias", bias)
    check_rank("weight", weight, 3)
    k, d_in, d_out = weight.shape
    check_shape("x", x, (..., d_in))
    check_shape("bias", bias, (k, d_out))
    z = jnp.einsum("...i,pio->...po", x, weight)
    z = z + jnp.broadcast_to(bias, z.shape)
    return _max_over_pieces(z)
