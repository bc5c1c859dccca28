"""The chain rule's sum over paths, as a tool: split a gradient by the uses of a value.

When a value ``h`` feeds several consumers ``c_1, ..., c_m`` (a skip connection and a
residual branch, the direct path of batch norm and its batch statistics, the base
density and the log-determinant of a flow), reverse mode adds up what flows back along
each use:

    d f / d theta = sum_j (d h / d theta)^T (d f / d h)|_{through c_j}
                    + (d f / d theta)|_{not through h},

where ``(d f / d h)|_{through c_j}`` is the cotangent that arrives at ``h`` from its use
by ``c_j`` alone, and the last term collects every route from ``theta`` to ``f`` that
bypasses ``h``. ``decompose`` returns these terms.

How. ``tag(x, name)`` marks a value (an array or a pytree) inside any function: it is an
identity primitive, so it stays in the function's jaxpr under ``jit``, ``vmap``,
``scan``, ``grad``, ``jvp`` and in Flax modules. ``decompose(f, *args, at=name)``
traces ``f`` to a jaxpr, finds the tagged value and every equation that uses it,
including uses inside ``jit`` and ``jax.checkpoint`` bodies (followed inside) and
``scan`` bodies (a tagged constant or sliced input is followed into the body, a tag
inside the body splits each iteration's uses). It then re-evaluates the jaxpr with an
identity ``route_j(h) = h`` at use ``j`` whose derivative is ``w_j`` times the
identity. With ``w = e_j`` (one-hot) reverse mode returns exactly path ``j``'s
term, with ``w = 0`` the bypass; by linearity of the chain rule over paths the terms
sum to the full gradient. All ``w`` rows run in one ``jax.vmap`` over the backward
pass: the forward pass does not depend on ``w`` and runs once, so the cost is one
forward pass and ``m + 1`` vectorised backward passes (``m`` uses).

Uses inside a ``custom_jvp``/``custom_vjp`` function, ``cond`` or ``while_loop`` are
one consumer each (their derivative is a rule of its own); a tag *inside* such a body,
or a tagged initial carry of a ``scan``, cannot be split there and is reported as one
use or refused with a ``ValueError``.

Reference: the multivariate chain rule as a sum over paths, e.g. Griewank & Walther,
"Evaluating Derivatives", 2nd ed., SIAM 2008, Sec. 3.1 (the reverse mode accumulates
adjoints over all uses of a variable).
"""

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Primitive, Var
from jax.interpreters import ad, batching, mlir

__all__ = [
    "Decomposition",
    "Path",
    "decompose",
    "plot_decomposition",
    "tag",
]

# --- the tag: an identity primitive that stays in the jaxpr -------------------------

tag_p = Primitive("tag")
tag_p.multiple_results = True


def _tag_identity(*values, name, leaves):
    del name, leaves
    return values


tag_p.def_impl(_tag_identity)
tag_p.def_abstract_eval(lambda *avals, name, leaves: avals)
mlir.register_lowering(tag_p, mlir.lower_fun(_tag_identity, multiple_results=True))
# Forward mode: the primal keeps its tag, tangents pass through unchanged (the tag is
# linear, so reverse mode transposes the pass-through and needs no rule of its own).
ad.primitive_jvps[tag_p] = lambda primals, tangents, **params: (
    tag_p.bind(*primals, **params),
    tangents,
)
batching.primitive_batchers[tag_p] = lambda values, dims, **params: (
    tag_p.bind(*values, **params),
    dims,
)


def tag(x: Any, name: str) -> Any:
    """Mark ``x`` (an array or a pytree of arrays) as the value named ``name``.

    An identity: the same value in the forward pass, the same derivatives under
    ``jax.grad``, ``jax.jvp``, ``jax.jacfwd`` and every other transformation. It shows
    in the jaxpr as one ``tag`` equation, where :func:`decompose` finds it (under
    ``jit``, ``vmap``, ``scan`` and inside Flax modules).

    Args:
      x: the value, an array or any pytree of arrays (a flow's ``(z, logdet)``).
      name: a non-empty string naming it; ``decompose(..., at=name)`` selects it.

    Returns:
      ``x`` unchanged.

    Raises:
      TypeError: ``name`` is not a string.
      ValueError: ``name`` is empty.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = lambda x: jnp.sum(tag(jnp.sin(x), "h") ** 2)
      >>> bool(jax.grad(f)(1.0) == jax.grad(lambda x: jnp.sin(x) ** 2)(1.0))
      True
    """
    _check_name("name", name)
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(x)
    if not leaves_with_path:
        return x
    keys = tuple(jax.tree_util.keystr(path) for path, _ in leaves_with_path)
    values = [jnp.asarray(leaf) for _, leaf in leaves_with_path]
    return jax.tree.unflatten(treedef, tag_p.bind(*values, name=name, leaves=keys))


def _check_name(argument: str, name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a string, got {name!r}")
    if not name:
        raise ValueError(f"{argument} must be a non-empty string, got ''")


# --- the result ----------------------------------------------------------------------


class Path(NamedTuple):
    """One path from the tagged value to the output: one use of the value.

    Attributes:
      label: the key of this path in :attr:`Decomposition.by_path`.
      operation: the consuming primitive (``"add"``, ``"dot_general"``, ``"scan"``,
        ...), or ``""`` for the bypass (the routes that avoid the tagged value).
      scope: the name stack where the use happens (``jax.named_scope`` labels, Flax
        module paths, ``scan`` for a loop body), or ``""``.
      source: ``file:line (function)`` of the user code that made the use, or ``""``.
      leaf: which leaf of a tagged pytree is used (``jax.tree_util.keystr``: ``"[0]"``,
        ``"['z']"``); ``""`` for a tagged array.
    """

    label: str
    operation: str
    scope: str
    source: str
    leaf: str


def _vector(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((0,))
    return jnp.concatenate([jnp.ravel(leaf) for leaf in leaves])


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["total", "terms"],
    meta_fields=["paths", "name"],
)
@dataclasses.dataclass(frozen=True)
class Decomposition:
    """What :func:`decompose` returns: a gradient and its terms, one per path.

    A pytree (``paths`` and ``name`` are static), so it passes through ``jax.jit``.

    Attributes:
      total: ``jax.grad(f, argnums)(*args)`` (to round-off: the sum of the terms).
      terms: one term per path, each with the structure of ``total``; they sum to
        ``total``.
      paths: the :class:`Path` of every term, in the order of the computation.
      name: the tag the decomposition is about.
    """

    total: Any
    terms: tuple[Any, ...]
    paths: tuple[Path, ...]
    name: str

    @property
    def by_path(self) -> dict[str, Any]:
        """label -> term, in the order of ``paths``."""
        return {p.label: t for p, t in zip(self.paths, self.terms, strict=True)}

    def _pairs(self):
        return zip(self.paths, self.terms, strict=True)

    def norms(self) -> dict[str, jax.Array]:
        """label -> the Euclidean norm of that term (all leaves together)."""
        return {
            p.label: jnp.linalg.norm(_vector(self.by_path[p.label])) for p in self.paths
        }

    def shares(self) -> dict[str, jax.Array]:
        """label -> ``<term, total> / <total, total>``: the fraction of the gradient
        along that path, projected on the total; the shares sum to 1 (NaN if the total
        is 0)."""
        total = _vector(self.total)
        squared = jnp.vdot(total, total)
        return {
            p.label: jnp.vdot(_vector(t), total) / squared for p, t in self._pairs()
        }

    def cosines(self) -> jax.Array:
        """``(m, m)`` cosines between the terms, in the order of ``paths`` (0 where a
        term is 0)."""
        rows = jnp.stack([_vector(t) for t in self.terms])
        norms = jnp.linalg.norm(rows, axis=1)
        safe = jnp.where(norms > 0, norms, 1.0)
        unit = rows / safe[:, None]
        return jnp.where(norms[:, None] * norms[None, :] > 0, unit @ unit.T, 0.0)

    def group(self, key: Callable[[Path], str]) -> dict[str, Any]:
        """Sum the terms whose paths share ``key(path)`` (first appearance order).

        Example: ``d.group(lambda p: p.leaf)`` gives one term per leaf of a tagged
        pytree; ``d.group(lambda p: p.scope.split("/")[0])`` one per named scope.
        """
        groups: dict[str, list[Any]] = {}
        for p, t in self._pairs():
            groups.setdefault(key(p), []).append(t)
        return {
            name: functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b), terms)
            for name, terms in groups.items()
        }


# --- finding the uses ----------------------------------------------------------------

# Call-like primitives whose body is followed inside (same derivative as inlining).
_CALLS = {"jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint"}
_EXCLUDED_DIRS = tuple(
    os.path.dirname(module.__file__) + os.sep
    for module in (jax, np)
    if getattr(module, "__file__", None)
)


def _excluded(file_name: str) -> bool:
    if file_name == __file__ or file_name.startswith(_EXCLUDED_DIRS):
        return True
    parts = file_name.replace("\\", "/").split("/")
    return any(part in ("jaxlib", "flax", "contextlib.py") for part in parts)


def _source(eqn) -> str:
    """``file:line (function)`` of the innermost user frame of ``eqn``, or ``""``."""
    traceback = getattr(eqn.source_info, "traceback", None)
    for frame in getattr(traceback, "frames", ()):
        if not _excluded(frame.file_name):
            name = os.path.basename(frame.file_name)
            return f"{name}:{frame.line_num} ({frame.function_name})"
    return ""


def _operation(eqn) -> str:
    name = eqn.primitive.name
    if name.startswith("custom_"):
        call = eqn.params.get("call_jaxpr")
        debug = getattr(getattr(call, "jaxpr", call), "debug_info", None)
        func = getattr(debug, "func_name", None)
        if func:
            return f"{name}({func.split(' ')[0]})"
    return name


def _join(*scopes: str) -> str:
    # Transformations show in name stacks as "vmap()", "jvp()": keep the name only.
    return "/".join(s.replace("()", "") for s in scopes if s)


def _sub_jaxprs(params: Mapping[str, Any]):
    for value in params.values():
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, Jaxpr):
                yield v


def _tags_in(jaxpr: Jaxpr) -> set[str]:
    """Names of every tag in ``jaxpr`` and its sub-jaxprs."""
    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive is tag_p:
            found.add(eqn.params["name"])
        for sub in _sub_jaxprs(eqn.params):
            found |= _tags_in(sub)
    return found


def _route_float(x: jax.Array) -> bool:
    return jnp.issubdtype(x.dtype, jnp.inexact)


@jax.custom_jvp
def _route(x: jax.Array, weight: jax.Array) -> jax.Array:
    """The identity, whose derivative is ``weight`` times the identity."""
    del weight
    return x


@_route.defjvp
def _route_jvp(primals, tangents):
    x, weight = primals
    return x, weight * tangents[0]


@dataclasses.dataclass
class _Router:
    """Walks a jaxpr, naming each use of the tagged value (record) or routing it.

    In recording mode (``weights is None``) a use is registered in ``uses``, in
    traversal order, and left alone; with ``weights`` the ``j``-th use is replaced by
    ``_route(value, weights[j])``. Both walks visit the uses in the same order, so
    the indices agree.
    """

    name: str
    weights: jax.Array | None = None
    uses: dict[tuple, Path] = dataclasses.field(default_factory=dict)
    found: bool = False

    def use(self, key: tuple, value: Any, path: Path) -> Any:
        if not _route_float(jnp.asarray(value)):
            return value
        if self.weights is None:
            self.uses.setdefault(key, path)
            return value
        index = list(self.uses).index(key)
        return _route(value, self.weights[index].astype(value.dtype))

    def eval(
        self,
        jaxpr: Jaxpr,
        consts: Sequence[Any],
        args: Sequence[Any],
        *,
        where: tuple = (),
        scope: str = "",
        tagged_args: Mapping[int, str] | None = None,
    ) -> tuple[list[Any], dict[int, str]]:
        """Evaluate ``jaxpr``; returns its outputs and which of them are tagged
        (output index -> leaf)."""
        env: dict[Var, Any] = {}
        tagged: dict[Var, str] = {}

        def read(v):
            return v.val if isinstance(v, Literal) else env[v]

        for v, value in zip(jaxpr.constvars, consts, strict=True):
            env[v] = value
        for i, (v, value) in enumerate(zip(jaxpr.invars, args, strict=True)):
            env[v] = value
            if tagged_args and i in tagged_args:
                tagged[v] = tagged_args[i]
        for index, eqn in enumerate(jaxpr.eqns):
            invals = [read(v) for v in eqn.invars]
            uses = {
                pos: tagged[v]
                for pos, v in enumerate(eqn.invars)
                if isinstance(v, Var) and v in tagged
            }
            here = (*where, index)
            if eqn.primitive is tag_p and eqn.params["name"] == self.name:
                self.found = True
                for v, leaf in zip(eqn.outvars, eqn.params["leaves"], strict=True):
                    tagged[v] = leaf
                outs = invals
                out_tagged: dict[int, str] = {}
            elif not uses and self.name not in _tags_in_eqn(eqn):
                outs, out_tagged = _bind(eqn, invals), {}
            else:
                outs, out_tagged = self._eval_use(eqn, invals, uses, here, scope)
            for i, (v, value) in enumerate(zip(eqn.outvars, outs, strict=True)):
                env[v] = value
                if i in out_tagged:
                    tagged[v] = out_tagged[i]
        outs, out_tagged = [], {}
        for i, v in enumerate(jaxpr.outvars):
            outs.append(read(v))
            if isinstance(v, Var) and v in tagged:
                out_tagged[i] = tagged[v]
        return outs, out_tagged

    def _eval_use(self, eqn, invals, uses, here, scope):
        """An equation that uses the tagged value or holds the tag in its body."""
        name = eqn.primitive.name
        inner = _join(scope, str(eqn.source_info.name_stack))
        if name in _CALLS:
            body = eqn.params["jaxpr"]
            closed = body if isinstance(body, ClosedJaxpr) else None
            jaxpr, consts = (closed.jaxpr, closed.consts) if closed else (body, [])

            def call(*args):
                return self.eval(
                    jaxpr, consts, args, where=here, scope=inner, tagged_args=uses
                )

            if name in ("remat2", "checkpoint"):  # keep the rematerialisation
                return self._remat(eqn, call, invals)
            return call(*invals)
        if name == "scan":
            return self._scan(eqn, invals, uses, here, inner)
        if self.name in _tags_in_eqn(eqn):
            raise ValueError(
                f"the tag {self.name!r} is inside a {name} body, whose derivative "
                "decompose cannot split by path; tag a value outside it (tags are "
                "followed inside jit, checkpoint and scan)"
            )
        return self._consumer(eqn, invals, uses, here, scope), {}

    def _consumer(self, eqn, invals, uses, here, scope, operation=None):
        """An equation that consumes the tagged value as a whole: one path per
        tagged operand."""
        operation = operation or _operation(eqn)
        scope = _join(scope, str(eqn.source_info.name_stack))
        source = _source(eqn)
        invals = list(invals)
        for pos, leaf in uses.items():
            op = f"{operation}[operand {pos}]" if len(uses) > 1 else operation
            path = Path(_label(leaf, scope, op, source), op, scope, source, leaf)
            invals[pos] = self.use((*here, pos), invals[pos], path)
        return _bind(eqn, invals)

    def _remat(self, eqn, call, invals):
        tagged_out: dict[int, str] = {}

        def body(*args):
            outs, out_tagged = call(*args)
            tagged_out.update(out_tagged)
            return outs

        policy = eqn.params.get("policy")
        outs = jax.checkpoint(
            body, prevent_cse=eqn.params.get("prevent_cse", True), policy=policy
        )(*invals)
        return list(outs), tagged_out

    def _scan(self, eqn, invals, uses, here, scope):
        params = eqn.params
        num_consts, num_carry = params["num_consts"], params["num_carry"]
        closed = params["jaxpr"]
        carry_uses = {
            p: leaf
            for p, leaf in uses.items()
            if num_consts <= p < num_consts + num_carry
        }
        if carry_uses:  # the loop as a whole consumes a tagged initial carry
            invals = list(invals)
            source = _source(eqn)
            for pos, leaf in carry_uses.items():
                op = "scan[initial carry]"
                path = Path(_label(leaf, scope, op, source), op, scope, source, leaf)
                invals[pos] = self.use((*here, pos), invals[pos], path)
        body_uses = {p: leaf for p, leaf in uses.items() if p not in carry_uses}
        consts = invals[:num_consts]
        init = invals[num_consts : num_consts + num_carry]
        xs = invals[num_consts + num_carry :]
        loop = _join(scope, "scan")
        ys_tagged: dict[int, str] = {}

        def step(carry, x):
            outs, out_tagged = self.eval(
                closed.jaxpr,
                closed.consts,
                [*consts, *carry, *x],
                where=here,
                scope=loop,
                tagged_args=body_uses,
            )
            carry_out = list(outs[:num_carry])
            for i, leaf in out_tagged.items():
                if i < num_carry:  # the tagged value flows into the next iteration
                    op = "carry"
                    path = Path(_label(leaf, loop, op, ""), op, loop, "", leaf)
                    carry_out[i] = self.use((*here, "carry", i), carry_out[i], path)
                else:
                    ys_tagged[i - num_carry] = leaf
            return carry_out, outs[num_carry:]

        carry, ys = jax.lax.scan(
            step,
            init,
            xs,
            length=params["length"],
            reverse=params["reverse"],
            unroll=params["unroll"],
        )
        out_tagged = {num_carry + i: leaf for i, leaf in ys_tagged.items()}
        return [*carry, *ys], out_tagged


def _tags_in_eqn(eqn) -> set[str]:
    found = set()
    for sub in _sub_jaxprs(eqn.params):
        found |= _tags_in(sub)
    return found


def _bind(eqn, invals):
    outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return outs if eqn.primitive.multiple_results else [outs]


def _label(leaf: str, scope: str, operation: str, source: str) -> str:
    text = _join(scope, operation)
    if source:
        text = f"{text} at {source}"
    return f"{leaf} -> {text}" if leaf else text


# --- which arguments reach the output through the tag, and which around it ----------


# Bit 0: "computed from the tagged value"; bit k + 1: differentiated leaf k.
_CROSSED = 1


class _Reach(NamedTuple):
    """Bit masks over the differentiated leaves (bit ``i``: leaf ``i``)."""

    around: list[int]  # per output: leaves it depends on along a route avoiding the tag
    full: list[int]  # per output: leaves it depends on at all
    tagged: int  # leaves the tagged value depends on


def _reach(
    jaxpr: Jaxpr, around: Sequence[int], full: Sequence[int], name: str
) -> _Reach:
    """Dependence of ``jaxpr``'s outputs on its inputs, with the tag ``name`` cut for
    ``around`` (conservative: an opaque equation passes every dependence through)."""
    cut: dict[Var, int] = dict(zip(jaxpr.invars, around, strict=True))
    dep: dict[Var, int] = dict(zip(jaxpr.invars, full, strict=True))
    tagged = 0

    def masks(table, atoms):
        return [table.get(v, 0) if isinstance(v, Var) else 0 for v in atoms]

    for eqn in jaxpr.eqns:
        ins_cut, ins_full = masks(cut, eqn.invars), masks(dep, eqn.invars)
        n = len(eqn.outvars)
        if eqn.primitive is tag_p and eqn.params["name"] == name:
            if any(mask & _CROSSED for mask in ins_full):
                raise ValueError(
                    f"the value tagged {name!r} depends on itself (a loop carry or the "
                    "same name tagged twice along one route), so a route crosses it "
                    "more than once and its uses do not split the gradient; give each "
                    "occurrence its own name"
                )
            tagged |= functools.reduce(int.__or__, ins_full, 0)
            outs = _Reach([0] * n, [mask | _CROSSED for mask in ins_full], 0)
        elif eqn.primitive.name in _CALLS and name in _tags_in_eqn(eqn):
            body = eqn.params["jaxpr"]
            outs = _reach(getattr(body, "jaxpr", body), ins_cut, ins_full, name)
        elif eqn.primitive.name == "scan" and name in _tags_in_eqn(eqn):
            outs = _scan_reach(eqn, ins_cut, ins_full, name)
        else:
            any_cut = functools.reduce(int.__or__, ins_cut, 0)
            any_full = functools.reduce(int.__or__, ins_full, 0)
            outs = _Reach([any_cut] * n, [any_full] * n, 0)
        tagged |= outs.tagged
        cut.update(zip(eqn.outvars, outs.around, strict=True))
        dep.update(zip(eqn.outvars, outs.full, strict=True))
    return _Reach(masks(cut, jaxpr.outvars), masks(dep, jaxpr.outvars), tagged)


def _scan_reach(eqn, around: list[int], full: list[int], name: str) -> _Reach:
    consts, carry = eqn.params["num_consts"], eqn.params["num_carry"]
    body = eqn.params["jaxpr"].jaxpr
    state = (around[consts : consts + carry], full[consts : consts + carry])
    while True:  # a fixed point over what the carry depends on
        outs = _reach(
            body,
            [*around[:consts], *state[0], *around[consts + carry :]],
            [*full[:consts], *state[1], *full[consts + carry :]],
            name,
        )
        new = tuple(
            [a | b for a, b in zip(old, out[:carry], strict=True)]
            for old, out in zip(state, (outs.around, outs.full), strict=True)
        )
        if new == state:
            return _Reach(
                [*state[0], *outs.around[carry:]],
                [*state[1], *outs.full[carry:]],
                outs.tagged,
            )
        state = new


# --- decompose -----------------------------------------------------------------------


class _ByIdentity:
    """A static argument compared by identity (for unhashable callables)."""

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return id(self.value)

    def __eq__(self, other):
        return isinstance(other, _ByIdentity) and other.value is self.value


def _argnums(argnums: int | Sequence[int], count: int) -> tuple[int, ...]:
    items = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            raise TypeError(
                f"argnums must be an int or a tuple of ints, got {argnums!r}"
            )
        if not -count <= item < count:
            raise ValueError(
                f"argnums must be in -{count}..{count - 1} (f gets {count} positional "
                f"arguments), got {argnums!r}"
            )
    return tuple(int(i) % count for i in items)


def decompose(
    f: Callable[..., Any], *args: Any, at: str, argnums: int | Sequence[int] = 0
) -> Decomposition:
    """Split ``jax.grad(f, argnums)(*args)`` over the uses of the value tagged ``at``.

    For a scalar ``f`` whose computation passes through ``h = tag(..., at)``, the
    gradient is the sum over the uses ``c_j`` of ``h`` of
    ``(dh/dtheta)^T (df/dh)|_{through c_j}`` plus the part of the gradient that
    bypasses ``h`` (see the module docstring). Each use is an equation of ``f``'s
    jaxpr; its label names the operation, the name scope (``jax.named_scope``, Flax
    module path) and the user source line, e.g. ``"block/add at model.py:12
    (__call__)"``. The bypass is labelled ``"not through <at>"`` and appears only
    when some route from the differentiated arguments to ``f`` avoids the tag.

    Cost: one forward pass and one vectorised backward pass per path (all in one
    ``jax.jit``-compiled program; the forward pass is shared). Repeated calls with
    the same ``f`` object and argument shapes reuse the compiled program.

    Args:
      f: a function returning a real scalar, ``f(*args)``.
      *args: its arguments (pytrees of arrays).
      at: the name given to :func:`tag` inside ``f``.
      argnums: which positional argument(s) to differentiate, as in ``jax.grad``.

    Returns:
      A :class:`Decomposition`: ``total`` (the gradient, structured as ``jax.grad``'s),
      ``by_path`` (label -> term; the terms sum to ``total``) and ``paths``.

    Raises:
      ValueError: ``f`` does not return a scalar, no value is tagged ``at``, the tag
        sits inside a body whose derivative is its own rule (``custom_jvp``,
        ``cond``, ``while_loop``), or ``argnums`` is out of range.
      TypeError: ``at`` is not a string or ``argnums`` not an int or ints.

    Example:
      >>> import jax.numpy as jnp
      >>> def f(x):
      ...     h = tag(jnp.sin(x), "h")
      ...     return 3.0 * h + h**2          # two uses of h
      >>> d = decompose(f, 0.5, at="h")
      >>> [round(float(v), 4) for v in d.by_path.values()]  # 3 cos x, 2 sin x cos x
      [2.6327, 0.8415]
      >>> round(float(d.total), 4)
      3.4742
    """
    _check_name("at", at)
    argnums_given = argnums
    argnums = _argnums(argnums, len(args))
    try:
        hash(f)
        static = f
    except TypeError:
        static = _ByIdentity(f)
    return _decompose(static, args, at, argnums, isinstance(argnums_given, int))


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _decompose(static, args, at, argnums, single) -> Decomposition:
    f = static.value if isinstance(static, _ByIdentity) else static
    flat, in_tree = jax.tree.flatten(args)
    closed = jax.make_jaxpr(lambda *leaves: f(*jax.tree.unflatten(in_tree, leaves)))(
        *flat
    )
    out = closed.out_avals
    if len(out) != 1 or out[0].shape != ():
        given = out[0].shape if len(out) == 1 else f"{len(out)} outputs"
        raise ValueError(f"f must return a scalar, got shape {given}")
    tags = _tags_in(closed.jaxpr)
    if at not in tags:
        found = ", ".join(repr(t) for t in sorted(tags)) or "none"
        raise ValueError(f"no value tagged {at!r} in f; tags found: {found}")
    # Which flat leaves are differentiated.
    owners = jax.tree.flatten(
        tuple(jax.tree.map(lambda _, i=i: i, a) for i, a in enumerate(args))
    )[0]
    diff = [i for i, owner in enumerate(owners) if owner in argnums]
    for i in diff:
        if not jnp.issubdtype(jnp.result_type(flat[i]), jnp.inexact):
            raise TypeError(
                f"decompose differentiates argnums={argnums}, which hold a leaf of "
                f"dtype {jnp.result_type(flat[i])}; differentiate floating arrays only"
            )

    def evaluate(router, diff_leaves):
        leaves = list(flat)
        for i, leaf in zip(diff, diff_leaves, strict=True):
            leaves[i] = leaf
        outs, out_tagged = router.eval(
            closed.jaxpr, closed.consts, leaves, tagged_args=None
        )
        out = outs[0]
        if out_tagged:  # f returns the tagged value itself
            leaf = out_tagged[0]
            path = Path(_label(leaf, "", "output", ""), "output", "", "", leaf)
            out = router.use(("output",), out, path)
        return out

    recorder = _Router(at)
    jax.eval_shape(functools.partial(evaluate, recorder), [flat[i] for i in diff])
    paths = list(recorder.uses.values())
    labels = _unique([p.label for p in paths])
    paths = [p._replace(label=label) for p, label in zip(paths, labels, strict=True)]
    bits = [2 << diff.index(i) if i in diff else 0 for i in range(len(flat))]
    reach = _reach(closed.jaxpr, bits, bits, at)
    around = reach.around[0] & ~_CROSSED
    through = reach.tagged & reach.full[0] & ~_CROSSED
    if around:
        paths.append(Path(f"not through {at}", "", "", "", ""))

    def grads(weights):
        router = _Router(at, weights, recorder.uses)
        return jax.grad(functools.partial(evaluate, router))([flat[i] for i in diff])

    # Row j routes use j only; the last row (when some leaf has a route around the
    # tag) routes none: the bypass. A row of a leaf with a bypass holds the bypass
    # too, so it is subtracted there; elsewhere a row is exactly its path's term.
    weights = jnp.eye(len(recorder.uses), dtype=_weight_dtype(flat, diff))
    if around:
        weights = jnp.concatenate([weights, jnp.zeros_like(weights[:1])])
    rows = jax.vmap(grads)(weights) if len(weights) else None
    terms = [[] for _ in paths]
    for k, i in enumerate(diff):
        zero = jnp.zeros(jnp.shape(flat[i]), jnp.result_type(flat[i]))
        leaf_through, leaf_around = bool(through & 2 << k), bool(around & 2 << k)
        for row in range(len(recorder.uses)):
            if not leaf_through:
                term = zero
            elif leaf_around:
                term = rows[k][row] - rows[k][-1]
            else:
                term = rows[k][row]
            terms[row].append(term)
        if around:
            terms[-1].append(rows[k][-1] if leaf_around else zero)
    structured = tuple(
        _as_grad(leaves, diff, flat, in_tree, argnums, single) for leaves in terms
    )
    total_leaves = [
        functools.reduce(jnp.add, [t[k] for t in terms])
        if terms
        else jnp.zeros(jnp.shape(flat[i]), jnp.result_type(flat[i]))
        for k, i in enumerate(diff)
    ]
    total = _as_grad(total_leaves, diff, flat, in_tree, argnums, single)
    return Decomposition(total, structured, tuple(paths), at)


def _weight_dtype(flat, diff):
    dtypes = [jnp.result_type(flat[i]) for i in diff]
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.inexact)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _as_grad(diff_grads, diff, flat, in_tree, argnums, single):
    """Flat gradients of the differentiated leaves, structured as ``jax.grad``'s."""
    positions = dict(zip(diff, diff_grads, strict=True))
    leaves = [positions.get(i) for i in range(len(flat))]
    full = jax.tree.unflatten(in_tree, leaves)
    picked = tuple(full[i] for i in argnums)
    return picked[0] if single else picked


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


# --- the figure ----------------------------------------------------------------------


def plot_decomposition(
    decomposition: Decomposition, *, title: str | None = None, max_label: int = 48
):
    """Draw a decomposition: one edge per path, width by norm; cosines beside.

    Left: the tagged value on the left, one edge per path to the output on the
    right, its width proportional to the norm of the path's term and labelled with
    the norm and the share (``Decomposition.shares``). Right: the cosines between the
    terms (``Decomposition.cosines``). matplotlib is imported here, not with the
    module.

    Args:
      decomposition: what :func:`decompose` returned.
      title: a figure title; the tag's name when ``None``.
      max_label: labels longer than this are shortened in the middle.

    Returns:
      The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    paths = decomposition.paths
    norms = np.array([float(v) for v in decomposition.norms().values()])
    shares = np.array([float(v) for v in decomposition.shares().values()])
    cosines = np.asarray(decomposition.cosines()) if paths else np.zeros((0, 0))
    m = max(len(paths), 1)
    figure, (graph, matrix) = plt.subplots(
        1, 2, figsize=(11.0, 1.0 + 0.55 * m), gridspec_kw={"width_ratios": [1.6, 1.0]}
    )
    labels = [f"{k}: {_shorten(p.label, max_label)}" for k, p in enumerate(paths)]
    ys = np.linspace(1.0, 0.0, m) if m > 1 else np.array([0.5])
    widest = norms.max() if norms.size and norms.max() > 0 else 1.0
    graph.plot([0.0], [0.5], "o", ms=14, color="C0")
    graph.annotate(
        decomposition.name,
        (0.0, 0.5),
        xytext=(-8, 0),
        textcoords="offset points",
        ha="right",
        va="center",
    )
    for k, y in enumerate(ys[: len(paths)]):
        width = 0.5 + 9.5 * norms[k] / widest
        graph.plot(
            [0.0, 1.0],
            [0.5, y],
            lw=width,
            color=f"C{k % 10}",
            alpha=0.7,
            solid_capstyle="round",
        )
        graph.annotate(
            f"{labels[k]}\n|g| {norms[k]:.3g}, share {shares[k]:.2f}",
            (1.0, y),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    graph.set(xlim=(-0.4, 2.6), ylim=(-0.15, 1.15))
    graph.axis("off")
    graph.set_title(title or f"gradient paths from {decomposition.name!r}")
    image = matrix.imshow(cosines, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    for (i, j), value in np.ndenumerate(cosines):
        matrix.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    matrix.set_xticks(range(len(paths)), [str(k) for k in range(len(paths))])
    matrix.set_yticks(range(len(paths)), [str(k) for k in range(len(paths))])
    matrix.set_title("cosines between the paths' terms", fontsize=9)
    figure.colorbar(image, ax=matrix, fraction=0.046)
    figure.tight_layout()
    return figure


def _shorten(text: str, size: int) -> str:
    if len(text) <= size:
        return text
    half = (size - 3) // 2
    return f"{text[:half]}...{text[-half:]}"
