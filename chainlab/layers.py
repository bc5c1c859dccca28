"""Flax layers built on chainlab's functions, each in linen and in NNX.

Every layer comes twice, with the same maths and the same parameter names and shapes:
a ``flax.linen`` module (``Maxout``, ``TemperatureAttention``), used as
``module.apply(params, x)``, and a ``flax.nnx`` module (``MaxoutNNX``,
``TemperatureAttentionNNX``), which for the batch APIs of the library becomes
``apply(state, x)`` through ``graphdef, state = nnx.split(model)`` and
``lambda s, x: nnx.merge(graphdef, s)(x)``. Weights are ``(in, out)``, as in Flax.

``Maxout`` wraps :func:`chainlab.activations.maxout`, so its gradient routing (winner
only, ties to the lowest piece) holds inside any Flax model; ``ties="split"`` gives the
``jnp.max`` rule instead (a tie shares the gradient evenly), for comparison.
:func:`maxout_routing` tells which piece wins from a layer's own parameters, and the
linen layer also records it (``sow``) in the ``"intermediates"`` collection;
:func:`routed_gradient` measures where a per-sample gradient went.

``TemperatureAttention`` is :func:`chainlab.attention.attention` with a learned
temperature ``tau = exp(log_tau)``, optionally clipped
(:func:`chainlab.attention.temperature_from_log`). ``MemoryReader`` reads a memory of
(key, value) slots with it: learned unit-length queries (:func:`unit_queries`) against
unit keys give cosine logits scaled by ``1/tau``, as in CLIP.

References: Goodfellow et al., "Maxout Networks", ICML 2013; Vaswani et al.,
"Attention Is All You Need", NeurIPS 2017; Radford et al., "Learning Transferable
Visual Models From Natural Language Supervision", ICML 2021.
"""

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Dtype, Initializer
from jax.typing import ArrayLike

from chainlab.activations import maxout
from chainlab.attention import attention, temperature_from_log
from chainlab.validation import (
    as_real_float,
    check_at_least,
    check_choice,
    check_positive,
    check_rank,
    check_shape,
)

__all__ = [
    "Maxout",
    "MaxoutNNX",
    "MaxoutRouting",
    "MemoryReader",
    "MemoryReaderNNX",
    "RoutedGradient",
    "TemperatureAttention",
    "TemperatureAttentionNNX",
    "maxout_routing",
    "routed_gradient",
    "unit_queries",
]

Ties = Literal["lowest", "split"]
TIES = ("lowest", "split")
_DEFAULT_KERNEL_INIT = nn.initializers.lecun_normal(batch_axis=(0,))
_DEFAULT_BIAS_INIT = nn.initializers.zeros_init()


# --- maxout -------------------------------------------------------------------------


class MaxoutRouting(NamedTuple):
    """Which piece wins, per unit: the pieces, the winner and the size of the tie."""

    pieces: jax.Array  # (..., k, d_out): the affine pieces z the maximum is taken of
    winner: jax.Array  # (..., d_out): index of the winning piece, lowest at a tie
    tied: jax.Array  # (..., d_out): how many pieces reach the maximum (1: no tie)


def maxout_routing(params: Mapping[str, Any], x: ArrayLike) -> MaxoutRouting:
    r"""The routing of a maxout layer at inputs ``x``, from the layer's parameters.

    With :math:`z_{pj} = \sum_i x_i W_{pij} + b_{pj}` the winner of unit ``j`` is
    :math:`p^*_j = \min \operatorname{arg\,max}_p z_{pj}`, the only piece the chain
    rule sends gradient to (:func:`chainlab.activations.maxout`).

    Args:
      params: one layer's ``{"kernel": (k, d_in, d_out), "bias": (k, d_out)}``: a
        linen ``Maxout``'s ``params["params"][name]`` or ``nnx.state(layer)``.
      x: inputs ``(..., d_in)``.

    Raises ``ValueError`` on shapes that do not fit together (checked at trace time).

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"kernel": jnp.array([[[1.0]], [[-1.0]]]), "bias": jnp.zeros((2, 1))}
      >>> routing = maxout_routing(params, jnp.array([[-3.0], [0.0]]))
      >>> routing.winner.ravel().tolist(), routing.tied.ravel().tolist()
      ([1, 0], [1, 2])
    """
    kernel = as_real_float("kernel", params["kernel"])
    bias = as_real_float("bias", params["bias"])
    x = as_real_float("x", x)
    check_rank("kernel", kernel, 3)
    k, d_in, d_out = kernel.shape
    check_shape("bias", bias, (k, d_out))
    check_shape("x", x, (..., d_in))
    z = jnp.einsum("...i,pio->...po", x, kernel)
    z = z + jnp.broadcast_to(bias, z.shape)
    top = jnp.max(z, axis=-2, keepdims=True)
    tied = jnp.sum(z == top, axis=-2)
    return MaxoutRouting(pieces=z, winner=jnp.argmax(z, axis=-2), tied=tied)


class RoutedGradient(NamedTuple):
    """Where a maxout layer's gradient went, relative to the winning pieces."""

    to_losers_max_abs: jax.Array  # scalar: largest |gradient| of a non-winning piece
    pieces_with_grad: jax.Array  # (..., d_out): pieces with any non-zero gradient


def routed_gradient(grads: Mapping[str, Any], winner: ArrayLike) -> RoutedGradient:
    """Check a maxout layer's (per-sample) gradient against the winning pieces.

    ``grads`` is the gradient of the layer's parameters, ``{"kernel": (..., k, d_in,
    d_out), "bias": (..., k, d_out)}`` (e.g. ``vmap(grad)`` over samples), and
    ``winner`` ``(..., d_out)`` the winners of :func:`maxout_routing` at the same
    inputs. A piece "has gradient" for a unit when any entry of its kernel column or
    its bias is non-zero. With the ``"lowest"`` tie rule the chain rule gives
    ``to_losers_max_abs == 0`` and at most one piece with gradient per unit.

    Example:
      >>> import jax.numpy as jnp
      >>> grads = {"kernel": jnp.zeros((2, 1, 1)), "bias": jnp.array([[0.0], [1.0]])}
      >>> routed = routed_gradient(grads, jnp.array([1]))
      >>> float(routed.to_losers_max_abs), routed.pieces_with_grad.tolist()
      (0.0, [1])
    """
    g_kernel, g_bias = jnp.asarray(grads["kernel"]), jnp.asarray(grads["bias"])
    winner = jnp.asarray(winner)
    check_shape("grads['bias']", g_bias, (*winner.shape[:-1], None, winner.shape[-1]))
    losing = 1 - jax.nn.one_hot(winner, g_bias.shape[-2], axis=-2, dtype=g_bias.dtype)
    to_losers = jnp.maximum(
        jnp.max(jnp.abs(g_kernel * losing[..., None, :]), initial=0.0),
        jnp.max(jnp.abs(g_bias * losing), initial=0.0),
    )
    nonzero = jnp.any(g_kernel != 0, axis=-2) | (g_bias != 0)
    return RoutedGradient(to_losers, jnp.sum(nonzero, axis=-2))


def _maxout_forward(x, kernel, bias, ties: Ties) -> jax.Array:
    if ties == "split":
        return jnp.max(maxout_routing({"kernel": kernel, "bias": bias}, x).pieces, -2)
    return maxout(x, kernel, bias)


def _check_maxout(features: int, pieces: int, ties: str) -> None:
    check_at_least("features", features, 1)
    check_at_least("pieces", pieces, 1)
    check_choice("ties", ties, TIES)


class Maxout(nn.Module):
    r"""Maxout layer (linen): ``features`` units, each the maximum of ``pieces`` maps.

    .. math::
        y_j = \max_{p < k} \Big( \sum_i x_i W_{p i j} + b_{p j} \Big)

    with parameters ``kernel`` ``(pieces, d_in, features)`` and ``bias``
    ``(pieces, features)``. Per unit only the winning piece gets gradient; a tie goes
    to the lowest piece index (``ties="lowest"``), or is shared evenly among the tied
    pieces as by ``jnp.max`` (``ties="split"``). The default kernel init draws each
    piece like a Dense layer of fan-in ``d_in`` (LeCun normal, pieces independent).
    Outside ``init``, the layer sows its :class:`MaxoutRouting` as ``"routing"`` into
    the ``"intermediates"`` collection: ``model.apply(params, x,
    mutable=["intermediates"])``. Reference: Goodfellow et al., "Maxout Networks",
    ICML 2013. :class:`MaxoutNNX` is the same layer in NNX.

    Attributes:
      features: output units ``d_out`` (>= 1).
      pieces: affine pieces per unit ``k`` (>= 1; 2 or more to be nonlinear).
      ties: ``"lowest"`` (chainlab's rule) or ``"split"`` (``jnp.max``'s).
      kernel_init: initializer for ``kernel``.
      bias_init: initializer for ``bias``.
      param_dtype: dtype of the parameters.

    Raises ``ValueError`` at ``init``/``apply`` for a bad setting or input shape.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> layer = Maxout(features=3, pieces=4)
      >>> params = layer.init(jax.random.key(0), jnp.ones((2, 5)))
      >>> params["params"]["kernel"].shape, layer.apply(params, jnp.ones((2, 5))).shape
      ((4, 5, 3), (2, 3))
    """

    features: int
    pieces: int = 2
    ties: Ties = "lowest"
    kernel_init: Initializer = _DEFAULT_KERNEL_INIT
    bias_init: Initializer = _DEFAULT_BIAS_INIT
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x`` ``(..., d_in)`` -> ``(..., features)``."""
        _check_maxout(self.features, self.pieces, self.ties)
        x = as_real_float("x", x)
        if x.ndim < 1:
            raise ValueError(f"x must have shape (..., d_in), got {x.shape}")
        shape = (self.pieces, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = self.param(
            "bias", self.bias_init, (self.pieces, self.features), self.param_dtype
        )
        if not self.is_initializing():
            routing = maxout_routing({"kernel": kernel, "bias": bias}, x)
            self.sow("intermediates", "routing", routing)
        return _maxout_forward(x, kernel, bias, self.ties)


class MaxoutNNX(nnx.Module):
    """:class:`Maxout` in Flax NNX: same maths, parameter names and shapes.

    ``MaxoutNNX(in_features, features, pieces, rngs=nnx.Rngs(0))`` holds ``kernel``
    ``(pieces, in_features, features)`` and ``bias`` ``(pieces, features)``;
    :func:`maxout_routing` takes ``nnx.state(layer)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> layer = MaxoutNNX(5, 3, pieces=4, rngs=nnx.Rngs(0))
      >>> layer.kernel.shape, layer(jnp.ones((2, 5))).shape
      ((4, 5, 3), (2, 3))
    """

    def __init__(
        self,
        in_features: int,
        features: int,
        pieces: int = 2,
        *,
        ties: Ties = "lowest",
        kernel_init: Initializer = _DEFAULT_KERNEL_INIT,
        bias_init: Initializer = _DEFAULT_BIAS_INIT,
        param_dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_at_least("in_features", in_features, 1)
        _check_maxout(features, pieces, ties)
        shape = (pieces, in_features, features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
        self.bias = nnx.Param(bias_init(rngs.params(), (pieces, features), param_dtype))
        self.ties = ties

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x`` ``(..., in_features)`` -> ``(..., features)``."""
        return _maxout_forward(x, self.kernel[...], self.bias[...], self.ties)


# --- attention with a learned temperature -------------------------------------------


def _check_temperature(init_tau, min_tau, max_tau) -> None:
    check_positive("init_tau", init_tau)
    for name, bound in (("min_tau", min_tau), ("max_tau", max_tau)):
        if bound is not None:
            check_positive(name, bound)


class TemperatureAttention(nn.Module):
    """Softmax attention with a learned temperature (linen): ``softmax(q k^T / tau) v``.

    The one parameter is ``log_tau`` (a scalar, starting at ``log(init_tau)``), and
    ``tau = temperature_from_log(log_tau, min_tau=min_tau, max_tau=max_tau)``:
    optimising ``log tau`` keeps ``tau > 0`` with relative steps; the optional clip
    bounds the drift of ``tau`` towards 0 on separable data. No ``1/sqrt(d)`` is
    applied: start at ``init_tau=sqrt(d)`` for the scaling of Vaswani et al. (2017).
    Shapes and the mask are those of :func:`chainlab.attention.attention`:
    ``q (..., Tq, d)``, ``k (..., Tk, d)``, ``v (..., Tk, dv)`` -> ``(..., Tq, dv)``.
    :class:`TemperatureAttentionNNX` is the same layer in NNX.

    Raises ``ValueError`` for ``init_tau``, ``min_tau`` or ``max_tau`` not > 0.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> layer = TemperatureAttention(init_tau=2.0)
      >>> q, k, v = jnp.ones((3, 4)), jnp.ones((5, 4)), jnp.ones((5, 2))
      >>> params = layer.init(jax.random.key(0), q, k, v)
      >>> round(float(jnp.exp(params["params"]["log_tau"])), 4)
      2.0
      >>> layer.apply(params, q, k, v).shape
      (3, 2)
    """

    init_tau: float = 1.0
    min_tau: float | None = None
    max_tau: float | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, q: jax.Array, k: jax.Array, v: jax.Array, *, mask=None
    ) -> jax.Array:
        _check_temperature(self.init_tau, self.min_tau, self.max_tau)
        log_tau = self.param(
            "log_tau", lambda _: jnp.log(jnp.asarray(self.init_tau, self.param_dtype))
        )
        tau = temperature_from_log(log_tau, min_tau=self.min_tau, max_tau=self.max_tau)
        return attention(q, k, v, tau=tau, mask=mask)


class TemperatureAttentionNNX(nnx.Module):
    """:class:`TemperatureAttention` in Flax NNX: same maths, one ``log_tau`` Param.

    Example:
      >>> import jax.numpy as jnp
      >>> layer = TemperatureAttentionNNX(init_tau=2.0, min_tau=0.01)
      >>> layer(jnp.ones((3, 4)), jnp.ones((5, 4)), jnp.ones((5, 2))).shape
      (3, 2)
    """

    def __init__(
        self,
        init_tau: float = 1.0,
        *,
        min_tau: float | None = None,
        max_tau: float | None = None,
        param_dtype: Dtype = jnp.float32,
    ):
        _check_temperature(init_tau, min_tau, max_tau)
        self.log_tau = nnx.Param(jnp.log(jnp.asarray(init_tau, param_dtype)))
        self.min_tau, self.max_tau = min_tau, max_tau

    @property
    def tau(self) -> jax.Array:
        """The temperature ``exp(log_tau)``, clipped to ``[min_tau, max_tau]``."""
        return temperature_from_log(
            self.log_tau[...], min_tau=self.min_tau, max_tau=self.max_tau
        )

    def __call__(
        self, q: jax.Array, k: jax.Array, v: jax.Array, *, mask=None
    ) -> jax.Array:
        return attention(q, k, v, tau=self.tau, mask=mask)


# --- reading a memory by cosine attention -------------------------------------------


def unit_queries(kernel: ArrayLike, x: ArrayLike) -> jax.Array:
    r"""Unit-length queries ``q = x W / ||x W||``, one per row of ``x``.

    .. math::
        q = \frac{x W}{\lVert x W \rVert_2}

    Against unit-length keys, ``q k^T`` is then the cosine similarity, in ``[-1, 1]``
    whatever the scale of ``x`` and ``W``; the temperature alone sets the sharpness.
    A row with ``x W = 0`` has no direction (its query is NaN).

    Args:
      kernel: ``W`` ``(d_in, d)``.
      x: inputs ``(..., d_in)``.

    Returns:
      ``(..., d)``.

    Example:
      >>> import jax.numpy as jnp
      >>> q = unit_queries(jnp.eye(2), jnp.array([[3.0, 4.0]]))
      >>> [round(float(v), 4) for v in q[0]]
      [0.6, 0.8]
    """
    kernel, x = as_real_float("kernel", kernel), as_real_float("x", x)
    check_rank("kernel", kernel, 2)
    check_shape("x", x, (..., kernel.shape[0]))
    q = x @ kernel
    return q / jnp.linalg.norm(q, axis=-1, keepdims=True)


def _check_memory(x: jax.Array, keys: jax.Array) -> None:
    check_shape("x", x, (..., None, None))
    check_shape("keys", keys, (..., None, None))


class MemoryReader(nn.Module):
    r"""Reads a memory of (key, value) slots by cosine attention, its tau learned.

    .. math::
        q = \frac{x W}{\lVert x W \rVert}, \qquad
        \mathrm{out} = \mathrm{softmax}\big(q K^\top / \tau\big)\, V

    The queries come from :func:`unit_queries`; with unit-length keys the logits are
    cosine similarities and ``1/tau`` is the logit scale, as in CLIP (Radford et al.,
    2021, who clip it at 100: pass ``min_tau=0.01``). The parameters are the query map
    ``"query"`` ``W`` ``(d_in, d)``, which starts at the identity ``jnp.eye(d_in, d)``
    (the raw inputs as queries), and the :class:`TemperatureAttention` submodule
    ``"attention"`` with its ``log_tau``. The memory (``keys``, ``values``) is an input,
    not a parameter. :class:`MemoryReaderNNX` is the same layer in NNX.

    Shapes: ``x`` ``(..., n, d_in)``, ``keys`` ``(..., M, d)``, ``values``
    ``(..., M, dv)`` -> ``(..., n, dv)``, as in :func:`chainlab.attention.attention`.

    Attributes:
      init_tau: the starting temperature (> 0).
      min_tau: lower clip of the temperature (> 0), or ``None``.
      max_tau: upper clip of the temperature (> 0), or ``None``.
      param_dtype: dtype of the parameters.

    Raises ``ValueError`` for a setting not > 0 or shapes that do not fit together.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> reader = MemoryReader(init_tau=0.5, min_tau=0.01)
      >>> x, keys, values = jnp.ones((3, 4)), jnp.eye(5, 2), jnp.eye(5)
      >>> params = reader.init(jax.random.key(0), x, keys, values)
      >>> params["params"]["query"].shape, reader.apply(params, x, keys, values).shape
      ((4, 2), (3, 5))
    """

    init_tau: float = 1.0
    min_tau: float | None = None
    max_tau: float | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, keys: jax.Array, values: jax.Array) -> jax.Array:
        x, keys = as_real_float("x", x), as_real_float("keys", keys)
        _check_memory(x, keys)
        kernel = self.param(
            "query",
            lambda _, shape: jnp.eye(*shape, dtype=self.param_dtype),
            (x.shape[-1], keys.shape[-1]),
        )
        attend = TemperatureAttention(
            init_tau=self.init_tau,
            min_tau=self.min_tau,
            max_tau=self.max_tau,
            param_dtype=self.param_dtype,
            name="attention",
        )
        return attend(unit_queries(kernel, x), keys, values)


class MemoryReaderNNX(nnx.Module):
    """:class:`MemoryReader` in Flax NNX: same maths, parameter names and shapes.

    ``MemoryReaderNNX(in_features, key_features, init_tau)`` holds ``query``
    ``(in_features, key_features)``, starting at the identity, and the
    :class:`TemperatureAttentionNNX` ``attention``.

    Example:
      >>> import jax.numpy as jnp
      >>> reader = MemoryReaderNNX(4, 2, init_tau=0.5, min_tau=0.01)
      >>> reader(jnp.ones((3, 4)), jnp.eye(5, 2), jnp.eye(5)).shape
      (3, 5)
    """

    def __init__(
        self,
        in_features: int,
        key_features: int,
        init_tau: float = 1.0,
        *,
        min_tau: float | None = None,
        max_tau: float | None = None,
        param_dtype: Dtype = jnp.float32,
    ):
        check_at_least("in_features", in_features, 1)
        check_at_least("key_features", key_features, 1)
        shape = (in_features, key_features)
        self.query = nnx.Param(jnp.eye(*shape, dtype=param_dtype))
        self.attention = TemperatureAttentionNNX(
            init_tau, min_tau=min_tau, max_tau=max_tau, param_dtype=param_dtype
        )

    def __call__(self, x: jax.Array, keys: jax.Array, values: jax.Array) -> jax.Array:
        x, keys = as_real_float("x", x), as_real_float("keys", keys)
        _check_memory(x, keys)
        return self.attention(unit_queries(self.query[...], x), keys, values)
