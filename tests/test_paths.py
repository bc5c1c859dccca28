"""Tests for chainlab.paths: the tag, and gradients split over the uses of a value."""

import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from chainlab import paths
from chainlab.activations import relu
from chainlab.flows import gradient_pathways, realnvp, standard_normal_log_prob
from chainlab.normalization import batch_norm, instance_norm
from chainlab.paths import decompose, tag

ROOT = Path(__file__).resolve().parent.parent
# Terms and their sum are the same float64 sums as jax.grad's, in another order: a
# few ulps of the O(1) entries.
EXACT64 = 1e-13
# Central differences in float64 (step ~6e-6) on smooth O(1) functions: ~1e-10.
FD64 = 1e-7


def _close(a, b, tol=EXACT64):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=0, atol=tol)


def _inputs(key, shape=(4,)):
    return jax.random.normal(key, shape, jnp.float64)


def test_tag_is_an_identity_for_every_transformation(key, x64):
    x = _inputs(key)

    def tagged(x):
        h = tag(jnp.sin(x), "h")
        return jnp.sum(jnp.tanh(h) * h**2)

    def plain(x):
        h = jnp.sin(x)
        return jnp.sum(jnp.tanh(h) * h**2)

    check_grads(tagged, (x,), order=2, modes=("fwd", "rev"))

    def transformed(f):  # one compiled program per function
        scanned = jax.lax.scan(lambda c, xi: (c + f(xi[None]), None), 0.0, x)[0]
        return (
            jax.jacfwd(jax.grad(f))(x),
            jax.jvp(f, (x,), (x,)),
            jax.vmap(jax.grad(f))(x[:, None]),
            jax.grad(jax.checkpoint(f))(x),
            scanned,
        )

    both = jax.jit(lambda: (transformed(tagged), transformed(plain)))()
    _close(*both)
    tree = {"a": x, "b": (x[:2], 3.0)}
    _close(tag(tree, "t"), tree)
    assert "tag[" in str(jax.make_jaxpr(tagged)(x))


def test_tag_refuses_a_bad_name():
    with pytest.raises(TypeError, match="name must be a string"):
        tag(jnp.ones(2), 3)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        tag(jnp.ones(2), "")


def test_fan_out_splits_into_each_branch_gradient(key, x64):
    """f = a(h) + b(h): the two terms are exactly grad(a o h) and grad(b o h)."""
    k1, k2 = jax.random.split(key)
    x, weight = _inputs(k1), _inputs(k2, (3, 4))

    def hidden(x):
        return jnp.tanh(x) * 2.0

    def a(h):
        return jnp.sum(jnp.sin(h) * jnp.arange(1.0, 5.0))

    def b(h):
        return jnp.sum(jnp.tanh(weight @ h) ** 2)

    def f(x):
        h = tag(hidden(x), "h")
        with jax.named_scope("a"):
            first = a(h)
        with jax.named_scope("b"):
            second = b(h)
        return first + second

    d = decompose(f, x, at="h")
    assert [p.scope for p in d.paths] == ["a", "b"]
    assert [p.operation for p in d.paths] == ["sin", "dot_general"]
    assert all("test_paths.py" in p.source for p in d.paths)
    _close(d.terms[0], jax.grad(lambda x: a(hidden(x)))(x))
    _close(d.terms[1], jax.grad(lambda x: b(hidden(x)))(x))
    _close(d.total, jax.grad(f)(x))
    _close(d.group(lambda p: p.scope)["a"], d.terms[0])
    # The second term is the gradient of the variant a(stop_gradient(h)) + b(h),
    # that is of b(hidden(x)): checked by central differences.
    eps = 1e-6
    by_differences = [
        (b(hidden(x + eps * e)) - b(hidden(x - eps * e))) / (2 * eps)
        for e in jnp.eye(4)
    ]
    _close(d.terms[1], jnp.stack(by_differences), FD64)


class _Residual(nn.Module):
    """h = tanh(Dense(x)); y = h + Dense(tanh(Dense(h))) ("branch"); a linear head."""

    @nn.compact
    def __call__(self, x):
        h = tag(jnp.tanh(nn.Dense(4, name="embed", param_dtype=jnp.float64)(x)), "h")
        hidden = jnp.tanh(nn.Dense(4, name="branch_in", param_dtype=jnp.float64)(h))
        branch = nn.Dense(4, name="branch_out", param_dtype=jnp.float64)(hidden)
        y = h + branch
        return jnp.sum(nn.Dense(1, name="head", param_dtype=jnp.float64)(y) ** 2)


def test_residual_block_splits_into_skip_and_branch(key, x64):
    model = _Residual()
    x = _inputs(key, (3,))
    params = model.init(key, x)
    d = decompose(model.apply, params, x, at="h", argnums=1)
    assert [p.scope for p in d.paths] == ["_Residual/branch_in", "_Residual"]
    branch, skip = d.terms
    # By hand: g = dL/dy; skip = J_h^T g; branch = J_h^T J_branch^T g.
    p = params["params"]

    def embed(x):
        return jnp.tanh(x @ p["embed"]["kernel"] + p["embed"]["bias"])

    def residual_branch(h):
        hidden = jnp.tanh(h @ p["branch_in"]["kernel"] + p["branch_in"]["bias"])
        return hidden @ p["branch_out"]["kernel"] + p["branch_out"]["bias"]

    h, embed_vjp = jax.vjp(embed, x)
    y = h + residual_branch(h)
    g = jax.grad(lambda y: jnp.sum((y @ p["head"]["kernel"] + p["head"]["bias"]) ** 2))(
        y
    )
    _close(skip, embed_vjp(g)[0])
    _close(branch, embed_vjp(jax.vjp(residual_branch, h)[1](g)[0])[0])
    _close(d.total, jax.grad(model.apply, argnums=1)(params, x))
    # Parameter gradients: the embedding's flow through h, the rest bypasses it.
    d = jax.jit(lambda params: decompose(model.apply, params, x, at="h"))(params)
    assert d.paths[-1].label == "not through h"
    bypass = d.terms[-1]["params"]
    assert float(jnp.abs(bypass["embed"]["kernel"]).max()) == 0.0
    for term in d.terms[:-1]:
        assert float(jnp.abs(term["params"]["head"]["kernel"]).max()) == 0.0
    _close(d.total, jax.grad(model.apply)(params, x))
    shares = d.shares()
    assert sum(float(s) for s in shares.values()) == pytest.approx(1.0, abs=EXACT64)


def test_batch_norm_splits_into_direct_and_statistics_paths(key, x64):
    """Hand-derived terms of dL/dx for y = batch_norm(x), L = sum(g * y)."""
    kx, kg = jax.random.split(key)
    n, eps = 5, 1e-3
    x, g = _inputs(kx, (n, 3)), _inputs(kg, (n, 3))
    scale, offset = jnp.array([1.0, 2.0, 0.5]), jnp.zeros(3)

    def loss(x):
        return jnp.sum(g * batch_norm(tag(x, "x"), scale, offset, eps=eps))

    d = decompose(loss, x, at="x")
    functions = [p.source.split("(")[-1].rstrip(")") for p in d.paths]
    assert functions == ["_moments", "_moments", "_normalize"]
    s = jnp.sqrt(x.var(0, keepdims=True) + eps)
    xhat = (x - x.mean(0, keepdims=True)) / s
    gain = scale[None, :]
    direct = g * gain / s
    through_mean = jnp.broadcast_to(-gain / s * g.sum(0, keepdims=True) / n, x.shape)
    through_var = -gain / (n * s) * xhat * jnp.sum(g * xhat, 0, keepdims=True)
    _close(d.terms, (through_mean, through_var, direct))
    _close(d.total, jax.grad(loss)(x))
    # The batch-norm identities hold for the sum: the mean path cancels the direct
    # path's batch sum, and the variance path sums to zero on its own.
    _close(jnp.sum(direct + through_mean, 0), jnp.zeros(3))
    _close(jnp.sum(through_var, 0), jnp.zeros(3))
    # Instance norm: statistics per sample, so sample b's terms use g[b] only.
    xi, gi = _inputs(kx, (2, 3, 2)), _inputs(kg, (2, 3, 2))
    d = decompose(
        lambda x: jnp.sum(gi * instance_norm(tag(x, "x"), jnp.ones(2), jnp.zeros(2))),
        xi,
        at="x",
    )
    moved = decompose(
        lambda x: jnp.sum(
            gi.at[1].add(1.0) * instance_norm(tag(x, "x"), jnp.ones(2), jnp.zeros(2))
        ),
        xi,
        at="x",
    )
    for term, other in zip(d.terms, moved.terms, strict=True):
        _close(term[0], other[0])


def test_flow_log_likelihood_splits_into_base_density_and_log_determinant(key, x64):
    flow = realnvp(2, num_layers=2, hidden=(8,))
    params = jax.tree.map(
        lambda a: jnp.asarray(a, jnp.float64) + 0.1, flow.init(jax.random.key(1))
    )
    x = _inputs(key, (16, 2))

    def log_likelihood(params, x):
        z, logdet = tag(flow.forward(params, x), "flow")
        return jnp.mean(standard_normal_log_prob(z) + logdet)

    d = decompose(log_likelihood, params, x, at="flow")
    assert [p.leaf for p in d.paths] == ["[0]", "[1]"]
    by_leaf = d.group(lambda p: p.leaf)
    base, logdet = gradient_pathways(flow, params, x)
    _close(by_leaf["[0]"], base)
    _close(by_leaf["[1]"], logdet)


def test_uses_inside_jit_scan_and_vmap(key, x64):
    x = _inputs(key)

    @jax.jit
    def block(x):  # the tag inside a jit; the tagged value leaves it
        h = tag(jnp.sin(x), "h")
        return h, jnp.cos(h)

    def through_jit(x):
        h, c = block(x)
        return jnp.sum(h**2 + c)

    def inside_scan(x):  # each iteration tags its own value
        def body(carry, xi):
            h = tag(jnp.tanh(xi), "h")
            return carry * 0.5 + h, h**2

        carry, ys = jax.lax.scan(body, 0.5, x)
        return carry + jnp.sum(ys)

    def into_scan(x):  # a tagged constant and a tagged sliced input
        h = tag(jnp.sin(x), "h")
        carry, _ = jax.lax.scan(lambda c, hi: (c * jnp.sum(h) + hi, None), 0.1, h)
        return carry

    def vmapped(x):
        return jnp.sum(
            jax.vmap(lambda r: jnp.sum(tag(r, "h") * jnp.cos(tag(r, "h"))))(x)
        )

    expected = {
        through_jit: ["cos", "integer_pow"],
        inside_scan: ["add", "integer_pow"],
        into_scan: ["reduce_sum", "add"],
        vmapped: ["cos", "mul"],
    }
    for f, operations in expected.items():
        d = decompose(f, x, at="h")
        assert [p.operation for p in d.paths] == operations, f.__name__
        _close(d.total, jax.grad(f)(x))
    assert decompose(inside_scan, x, at="h").paths[0].scope == "scan"
    # Per-example decompositions: decompose under vmap and jit.
    per_example = jax.jit(jax.vmap(lambda r: decompose(vmapped, r, at="h").total))
    _close(per_example(x[:, None]), jax.vmap(jax.grad(vmapped))(x[:, None]))


def test_opaque_consumers_and_refusals(key, x64):
    x = _inputs(key)
    d = decompose(lambda x: jnp.sum(relu(tag(x, "h")) + tag(x, "h") ** 2), x, at="h")
    assert d.paths[0].operation == "custom_jvp_call(_relu)"

    def carried(x):  # a tagged initial carry: the loop is one consumer
        h = tag(jnp.sin(x), "h")
        carry, _ = jax.lax.scan(lambda c, _: (c * 0.9 + 1.0, None), h, None, length=3)
        return jnp.sum(carry**2) + jnp.sum(h)

    d = decompose(carried, x, at="h")
    assert d.paths[0].operation == "scan[initial carry]"
    _close(d.total, jax.grad(carried)(x))

    def recurrent(x):
        def body(c, xi):
            h = tag(jnp.tanh(c * xi), "h")
            return h + c, h**2

        return jnp.sum(jax.lax.scan(body, 0.5, x)[1])

    with pytest.raises(ValueError, match="depends on itself"):
        decompose(recurrent, x, at="h")

    def in_cond(x):
        return jax.lax.cond(x[0] > 0, lambda x: jnp.sum(tag(x, "h")), jnp.sum, x)

    with pytest.raises(ValueError, match="inside a cond body"):
        decompose(in_cond, x, at="h")


def test_bad_arguments(key):
    x = jnp.ones(3)

    def f(x, n):
        return jnp.sum(tag(x, "h") * n)

    with pytest.raises(ValueError, match="no value tagged 'z' in f; tags found: 'h'"):
        decompose(f, x, 2.0, at="z")
    with pytest.raises(TypeError, match="at must be a string"):
        decompose(f, x, 2.0, at=1)
    with pytest.raises(ValueError, match="argnums must be in -2..1"):
        decompose(f, x, 2.0, at="h", argnums=2)
    with pytest.raises(ValueError, match="f must return a scalar, got shape"):
        decompose(lambda x: tag(x, "h"), x, at="h")
    with pytest.raises(TypeError, match="differentiate floating arrays only"):
        decompose(f, x, 2, at="h", argnums=1)


def test_measures_and_the_figure(key):
    x = jax.random.normal(key, (4,))
    d = decompose(lambda x: jnp.sum(jnp.sin(tag(x, "h")) + tag(x, "h") ** 2), x, at="h")
    norms, cosines = d.norms(), np.asarray(d.cosines())
    assert list(norms) == [p.label for p in d.paths]
    np.testing.assert_allclose(np.diag(cosines), 1.0, rtol=1e-6)
    assert cosines.shape == (2, 2)
    figure = paths.plot_decomposition(d)
    assert len(figure.axes) == 3  # graph, cosines, colour bar
    figure.clf()


def test_module_imports_without_matplotlib():
    code = (
        "import sys, chainlab.paths; "
        "assert 'matplotlib' not in sys.modules; assert 'chainlab.runner' not in "
        "sys.modules"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
