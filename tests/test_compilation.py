"""Per-jit XLA compile options: the support check and the Eigen matmul option."""

import jax
import numpy as np
import pytest

from chainlab.compilation import compiles_with, eigen_matmul_options
from chainlab.models import MLP
from chainlab.regularizers import jacobian_penalty

# Eigen and YNNPACK sum the products in different orders: float32 round-off.
RTOL = 1e-5


def test_compiles_with_tells_known_from_unknown_options():
    assert compiles_with({})
    assert not compiles_with({"xla_no_such_option": "1"})
    assert compiles_with({"xla_cpu_use_onednn": False})
    assert not compiles_with({"xla_cpu_use_onednn": "not a bool"})


def test_eigen_matmul_options_are_accepted_where_offered():
    options = eigen_matmul_options()
    assert options in ({}, {"xla_cpu_experimental_ynn_fusion_type": ""})
    assert compiles_with(options)
    options["mutated"] = "by a caller"  # a fresh dict each call
    assert "mutated" not in eigen_matmul_options()


def _exact_penalty_grad(options):
    """The benchmark's shapes: a 64-128-128-10 MLP, a batch of 64."""
    model = MLP((128, 128, 10))
    x = jax.random.normal(jax.random.key(0), (64, 64))
    params = model.init(jax.random.key(1), x[:1])

    def penalty(p):
        return jacobian_penalty(model.apply, p, x, method="exact")

    compiled = jax.jit(jax.grad(penalty), compiler_options=options)
    return compiled.lower(params).compile(), params


def test_eigen_matmul_options_take_ynnpack_out_and_keep_the_numbers():
    if not eigen_matmul_options():
        pytest.skip("the option is not offered on this backend or jaxlib")
    default, params = _exact_penalty_grad({})
    if "ynn_fusion" not in default.as_text():
        pytest.skip("this jaxlib makes no YNNPACK fusions here to take out")
    ours, _ = _exact_penalty_grad(eigen_matmul_options())
    assert "ynn_fusion" not in ours.as_text()
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-6),
        ours(params),
        default(params),
    )
