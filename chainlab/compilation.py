"""XLA compile options for ``jax.jit``, checked against the running jaxlib first.

XLA's CPU backend hands matrix products, and the elementwise work around them, to
YNNPACK fusions by default. For the many mid-sized products of a nested-derivative
step (an exact Jacobian penalty of a 64-128-128-10 MLP runs ten VJPs at once: products
of 640 x 128 by 128 x 128, and their transposes) XLA's own Eigen matrix products are
faster. On a 2-core x86-64 machine (jaxlib 0.10.2) the exact-penalty training step
drops from about 1.8 ms to 1.5 ms, while a RealNVP step gets about 9% slower. So this
is a per-``jit`` choice, never a global flag::

    jax.jit(step, compiler_options=eigen_matmul_options())

The option is experimental in XLA. Where the running jaxlib does not know it, or the
default backend is not the CPU, :func:`eigen_matmul_options` returns ``{}`` and the
step compiles with XLA's defaults.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

# An empty list of fusion kinds: no YNNPACK fusions at all.
_YNNPACK_FUSIONS_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiles_with(options: dict[str, Any]) -> bool:
    """Whether a small ``jax.jit`` compiles with ``options`` on the default backend.

    The answer for each set of options is computed once per process.

    Example:
      >>> compiles_with({})
      True
      >>> compiles_with({"xla_no_such_option": "1"})
      False
    """
    return _compiles_with(frozenset(options.items()))


@functools.cache
def _compiles_with(options: frozenset) -> bool:
    probe = jax.jit(lambda a: a @ a, compiler_options=dict(options))
    try:
        probe.lower(jnp.ones((2, 2), jnp.float32)).compile()
    # XLA rejects unknown options and bad values; jax rejects wrong types itself.
    except (jax.errors.JaxRuntimeError, TypeError, ValueError):
        return False
    return True


def eigen_matmul_options() -> dict[str, str]:
    """``jax.jit`` compile options that keep CPU matrix products out of YNNPACK.

    Returns ``{"xla_cpu_experimental_ynn_fusion_type": ""}`` on a CPU backend whose
    jaxlib accepts it, else ``{}`` (GPU, TPU, or a jaxlib without the option). The
    check compiles once per process (:func:`compiles_with` remembers it).

    Example:
      >>> import jax
      >>> step = jax.jit(lambda w, x: x @ w, compiler_options=eigen_matmul_options())
    """
    if jax.default_backend() != "cpu" or not compiles_with(_YNNPACK_FUSIONS_OFF):
        return {}
    return dict(_YNNPACK_FUSIONS_OFF)
