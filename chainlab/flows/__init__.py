"""Normalizing flows: bijections with exact log-dets, composed by the chain rule.

``log p_X(x) = log p_Z(f(x)) + sum_k log|det J_{f_k}(x_{k-1})|`` for a flow
``f = f_K o ... o f_1`` and a standard normal ``p_Z``.

Every piece is a :class:`Bijection` of pure functions ``(init, forward, inverse,
initialize)``: affine and rational-quadratic spline couplings, masked autoregressive
layers, ActNorm, invertible linear maps, permutations, reshapes and preprocessing.
:func:`realnvp`, :func:`neural_spline_flow`, :func:`maf` and :func:`glow` assemble
them into a :class:`Flow` ``(init, forward, inverse, log_prob, sample, initialize)``;
given a ``context_dim``, each is a conditional density ``p(x | context)``. Scoring a
flow (bits/dim, the two-moons generating density, memorisation) and its training aids
(the two gradient pathways of the log-likelihood, Polyak averaging) live beside them.
"""

from chainlab.flows.actnorm import actnorm
from chainlab.flows.autoregressive import made_conditioner, masked_autoregressive
from chainlab.flows.averaging import with_average
from chainlab.flows.bijection import Bijection, chain, scan
from chainlab.flows.builders import glow, maf, neural_spline_flow, realnvp
from chainlab.flows.conditioners import Conditioner, conv_conditioner, mlp_conditioner
from chainlab.flows.coupling import affine_coupling
from chainlab.flows.evaluation import (
    bits_per_dim,
    nearest_distances,
    seeded_dequantization,
    two_moons_log_prob,
)
from chainlab.flows.flow import Flow, standard_normal_log_prob, transformed
from chainlab.flows.linear import invertible_linear
from chainlab.flows.masks import (
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
)
from chainlab.flows.multiscale import factor_out
from chainlab.flows.pathways import gradient_pathways, layerwise_norms_and_cosine
from chainlab.flows.permutation import permutation, reverse
from chainlab.flows.preprocessing import dequantize, logit, standardize
from chainlab.flows.reshape import reshape, squeeze, unsqueeze
from chainlab.flows.spline import (
    rational_quadratic_spline,
    spline_coupling,
    spline_outputs,
)

__all__ = [
    "Bijection",
    "Conditioner",
    "Flow",
    "actnorm",
    "affine_coupling",
    "alternating_mask",
    "bits_per_dim",
    "chain",
    "channel_mask",
    "checkerboard_mask",
    "conv_conditioner",
    "dequantize",
    "factor_out",
    "glow",
    "gradient_pathways",
    "half_mask",
    "invertible_linear",
    "layerwise_norms_and_cosine",
    "logit",
    "made_conditioner",
    "maf",
    "masked_autoregressive",
    "mlp_conditioner",
    "nearest_distances",
    "neural_spline_flow",
    "permutation",
    "rational_quadratic_spline",
    "realnvp",
    "reshape",
    "reverse",
    "scan",
    "seeded_dequantization",
    "spline_coupling",
    "spline_outputs",
    "squeeze",
    "standard_normal_log_prob",
    "standardize",
    "transformed",
    "two_moons_log_prob",
    "unsqueeze",
    "with_average",
]
