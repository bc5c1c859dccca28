"""Bad inputs for the science functions of the library (see ``test_bad_inputs.py``)."""

import jax
import jax.numpy as jnp
import numpy as np
from bad_input_case import Case

from chainlab import attribution, models
from chainlab.science import economics, finance, hamiltonian_network, mechanics
from chainlab.science import systems as sy

OPTION = {"S": 100.0, "K": 100.0, "T": 1.0, "r": 0.05, "sigma": 0.2}
PRICERS = {
    "black_scholes": finance.black_scholes,
    "greeks": finance.greeks,
    "greeks_closed_form": finance.greeks_closed_form,
    "price_via_heat_equation": finance.price_via_heat_equation,
}


def _option(pricer, **changes):
    return lambda: PRICERS[pricer](**{**OPTION, **changes})


def _option_cases() -> list[Case]:
    """Every pricer refuses a bad kind, S <= 0, K <= 0, T < 0 and sigma < 0 (as a
    Python float, a numpy array and a concrete jax array)."""
    cases = []
    for pricer in PRICERS:
        cases += [
            Case(
                f"{pricer} kind",
                _option(pricer, kind="straddle"),
                ValueError,
                "kind must be one of 'call', 'put'",
            ),
            Case(f"{pricer} S=0", _option(pricer, S=0.0), ValueError, "S must be > 0"),
            Case(
                f"{pricer} K<0", _option(pricer, K=-100.0), ValueError, "K must be > 0"
            ),
        ]
        strict = pricer in ("greeks_closed_form", "price_via_heat_equation")
        relation = "> 0" if strict else ">= 0"
        for name, value in (
            ("sigma float", -0.2),
            ("sigma numpy", np.array(-0.2)),
            ("sigma jax", jnp.array([0.2, -0.2])),
            ("T", -1.0),
        ):
            argument = name.split()[0]
            cases.append(
                Case(
                    f"{pricer} {name} < 0",
                    _option(pricer, **{argument: value}),
                    ValueError,
                    f"{argument} must be {relation}",
                )
            )
        if strict:
            cases.append(
                Case(
                    f"{pricer} sigma=0",
                    _option(pricer, sigma=0.0),
                    ValueError,
                    "sigma must be > 0",
                )
            )
    return cases


def oscillator(q, p, t):
    return 0.5 * (p**2 + q**2)


def _integrate(**changes):
    arguments = {"dt": 0.1, "steps": 3, **changes}
    return lambda: mechanics.integrate(oscillator, 1.0, 0.0, **arguments)


def _linear_islm(**changes):
    settings = {"c0": 200.0, "c": 0.75, "i0": 200.0, "b": 25.0, "k": 1.0, "h": 100.0}
    return lambda: economics.linear_islm(**{**settings, **changes})


MANKIW = economics.linear_islm(c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0)


def mankiw(x, theta):
    return economics.islm_residual(MANKIW, x, theta)


MANKIW_THETA = (100.0, 100.0, 1000.0, 2.0)
CLOSED_FORM = dict(
    c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, h=100.0, G=100.0, T=100.0, M=1e3, P=2.0
)
SPRING_FIELD = hamiltonian_network.hamiltonian_field(
    lambda w, x: w * jnp.sum(x**2, axis=-1)
)

X2 = jnp.array([2.0, 3.0])


def _product(z):
    return z[0] * z[1]


def _maxout():
    model = models.MaxoutMLP((5,), pieces=3, num_outputs=2)
    return model, model.init(jax.random.key(0), jnp.zeros((1, 4)))


CASES: list[Case] = [
    *_option_cases(),
    Case(
        "price_via_heat_equation odd num_x",
        lambda: finance.price_via_heat_equation(**OPTION, num_x=101),
        ValueError,
        "num_x must be even",
    ),
    Case(
        "price_via_heat_equation num_x=2",
        lambda: finance.price_via_heat_equation(**OPTION, num_x=2),
        ValueError,
        "num_x must be an integer >= 4",
    ),
    Case(
        "price_via_heat_equation half_width<0",
        lambda: finance.price_via_heat_equation(**OPTION, half_width=-1.0),
        ValueError,
        "half_width must be > 0",
    ),
    Case(
        "solve_heat_equation num_tau=0",
        lambda: finance.solve_heat_equation(2.5, 0.02, num_tau=0),
        ValueError,
        "num_tau must be an integer >= 1",
    ),
    Case(
        "solve_heat_equation k vector",
        lambda: finance.solve_heat_equation(jnp.ones(2), 0.02),
        ValueError,
        "k must be a scalar",
    ),
    Case(
        "solve_heat_equation tau_max<0",
        lambda: finance.solve_heat_equation(2.5, -0.02),
        ValueError,
        "tau_max must be >= 0",
    ),
    Case(
        "solve_heat_equation x_max<x_min",
        lambda: finance.solve_heat_equation(2.5, 0.02, x_min=1.0, x_max=-1.0),
        ValueError,
        "x_max - x_min must be > 0",
    ),
    Case(
        "solve_heat_equation kind",
        lambda: finance.solve_heat_equation(2.5, 0.02, kind="digital"),
        ValueError,
        "kind must be one of",
    ),
    Case(
        "pde_residual sigma<0",
        lambda: finance.pde_residual(lambda S, t: S, 1.0, 0.0, r=0.05, sigma=-0.2),
        ValueError,
        "sigma must be >= 0",
    ),
    Case(
        "heat_transform sigma=0",
        lambda: finance.heat_transform(lambda S, t: S, K=1.0, T=1.0, r=0.0, sigma=0.0),
        ValueError,
        "sigma must be > 0",
    ),
    Case(
        "heat_transform K<0",
        lambda: finance.heat_transform(lambda S, t: S, K=-1.0, T=1.0, r=0.0, sigma=0.2),
        ValueError,
        "K must be > 0",
    ),
    Case(
        "heat_residual shapes",
        lambda: finance.heat_residual(lambda x, tau: x, jnp.ones(2), jnp.ones(3)),
        ValueError,
        "shapes",
    ),
    # mechanics
    Case(
        "integrate method",
        _integrate(method="verlet"),
        ValueError,
        "method must be one of 'euler'",
    ),
    Case("integrate steps=0", _integrate(steps=0), ValueError, "steps must be an int"),
    Case("integrate steps float", _integrate(steps=2.0), TypeError, "steps must be"),
    Case("integrate dt=0", _integrate(dt=0.0), ValueError, "dt must be > 0"),
    Case(
        "integrate dt<0 jax", _integrate(dt=jnp.array(-0.1)), ValueError, "dt must be"
    ),
    Case(
        "integrate fixed_point_iterations=0",
        _integrate(fixed_point_iterations=0),
        ValueError,
        "fixed_point_iterations must be an integer >= 1",
    ),
    Case(
        "integrate q, p shapes",
        lambda: mechanics.integrate(
            lambda q, p, t: jnp.sum(q * q), jnp.ones(2), jnp.ones(3), dt=0.1, steps=3
        ),
        ValueError,
        "q and p must have the same shape",
    ),
    Case(
        "energy_rate H not scalar",
        lambda: mechanics.energy_rate(
            lambda q, p, t: q * p, jnp.ones(2), jnp.ones(2), 0.0
        ),
        ValueError,
        r"H\(q, p, t\) must return a scalar",
    ),
    Case(
        "energy_rate t vector",
        lambda: mechanics.energy_rate(oscillator, 1.0, 1.0, jnp.ones(2)),
        ValueError,
        "t must be a scalar",
    ),
    Case(
        "vector_field q, p shapes",
        lambda: mechanics.vector_field(oscillator, jnp.ones(2), jnp.ones(3), 0.0),
        ValueError,
        "q and p must have the same shape",
    ),
    Case(
        "odeint steps=0",
        lambda: mechanics.odeint(lambda y, t: y, 1.0, dt=0.1, steps=0),
        ValueError,
        "steps must be an integer >= 1",
    ),
    Case(
        "odeint dt<0",
        lambda: mechanics.odeint(lambda y, t: y, 1.0, dt=-0.1, steps=2),
        ValueError,
        "dt must be > 0",
    ),
    # systems
    Case(
        "kepler_pericentre e=1",
        lambda: sy.kepler_pericentre(1.0),
        ValueError,
        r"eccentricity must be in \[0, 1\)",
    ),
    Case(
        "angular_momentum 3-D",
        lambda: sy.angular_momentum(jnp.ones(3), jnp.ones(3)),
        ValueError,
        r"q must have shape \(2,?\)",
    ),
    Case(
        "parametric_oscillator eps nan",
        lambda: sy.parametric_oscillator(w0=1.0, eps=float("nan"), omega=1.0),
        ValueError,
        "eps must be finite",
    ),
    Case(
        "harmonic_flow frequency inf",
        lambda: sy.harmonic_flow(1.0, 0.0, 1.0, frequency=float("inf")),
        ValueError,
        "frequency must be finite",
    ),
    # hamiltonian_network
    Case(
        "hamiltonian_field odd state",
        lambda: SPRING_FIELD(1.0, jnp.ones((4, 3))),
        ValueError,
        r"states must be \(batch, 2 n\)",
    ),
    Case(
        "hamiltonian_field rank 1",
        lambda: SPRING_FIELD(1.0, jnp.ones(4)),
        ValueError,
        "states must have rank 2",
    ),
    Case(
        "field_loss derivatives shape",
        lambda: hamiltonian_network.field_loss(SPRING_FIELD)(
            1.0, (jnp.ones((4, 2)), jnp.ones((4, 3))), None
        ),
        ValueError,
        r"derivatives must have shape \(4, 2\)",
    ),
    Case(
        "rollout steps=0",
        lambda: hamiltonian_network.rollout(
            SPRING_FIELD, 1.0, jnp.ones((1, 2)), dt=0.1, steps=0
        ),
        ValueError,
        "steps must be an integer >= 1",
    ),
    Case(
        "rollout dt=0",
        lambda: hamiltonian_network.rollout(
            SPRING_FIELD, 1.0, jnp.ones((1, 2)), dt=0.0, steps=2
        ),
        ValueError,
        "dt must be > 0",
    ),
    # economics
    Case(
        "comparative_statics x matrix",
        lambda: economics.comparative_statics(mankiw, jnp.ones((2, 1)), jnp.ones(4)),
        ValueError,
        "x must have rank 1",
    ),
    Case(
        "comparative_statics F shape",
        lambda: economics.comparative_statics(
            lambda x, theta: x[:1], jnp.ones(2), jnp.ones(4)
        ),
        ValueError,
        r"F\(x, theta\) must have shape \(2,?\)",
    ),
    Case(
        "comparative_statics complex theta",
        lambda: economics.comparative_statics(mankiw, jnp.ones(2), jnp.ones(4) * 1j),
        TypeError,
        "theta must be real",
    ),
    Case(
        "solve_equilibrium max_steps=0",
        lambda: economics.solve_equilibrium(
            mankiw, jnp.ones(2), jnp.ones(4), max_steps=0
        ),
        ValueError,
        "max_steps must be an integer >= 1",
    ),
    Case(
        "solve_equilibrium tolerance<0",
        lambda: economics.solve_equilibrium(
            mankiw, jnp.ones(2), jnp.ones(4), tolerance=-1e-8
        ),
        ValueError,
        "tolerance must be > 0",
    ),
    Case(
        "solve_equilibrium theta scalar",
        lambda: economics.solve_equilibrium(mankiw, jnp.ones(2), 1.0),
        ValueError,
        "theta must have rank 1",
    ),
    Case(
        "islm_residual theta shape",
        lambda: economics.islm_residual(MANKIW, jnp.ones(2), jnp.ones(3)),
        ValueError,
        r"theta = \(G, T, M, P\) must have shape \(4,?\)",
    ),
    Case(
        "aggregate_demand P<0",
        lambda: economics.aggregate_demand(
            MANKIW, -1.0, G=100.0, T=100.0, M=1e3, x0=[0.0, 0.0]
        ),
        ValueError,
        "P must be > 0",
    ),
    Case(
        "aggregate_demand x0 shape",
        lambda: economics.aggregate_demand(
            MANKIW, 2.0, G=100.0, T=100.0, M=1e3, x0=[0.0]
        ),
        ValueError,
        r"x0 = \(Y, r\) must have shape \(2,?\)",
    ),
    Case("linear_islm h<0", _linear_islm(h=-1.0), ValueError, "h must be >= 0"),
    Case(
        "linear_islm b<0 jax", _linear_islm(b=jnp.array(-1.0)), ValueError, "b must be"
    ),
    Case(
        "semilog_islm eta<0",
        lambda: economics.semilog_islm(
            c0=200.0, c=0.75, i0=200.0, b=25.0, k=1.0, eta=-0.1
        ),
        ValueError,
        "eta must be >= 0",
    ),
    Case(
        "linear_islm_closed_form P=0",
        lambda: economics.linear_islm_closed_form(**{**CLOSED_FORM, "P": 0.0}),
        ValueError,
        "P must be > 0",
    ),
    Case(
        "semilog_ad_slope P<0",
        lambda: economics.semilog_ad_slope(1e3, -2.0, c=0.75, b=25.0, eta=0.1),
        ValueError,
        "P must be > 0",
    ),
    Case(
        "equilibrium_shift index out of range",
        lambda: economics.equilibrium_shift(
            mankiw,
            jnp.array([1100.0, 6.0]),
            jnp.array(MANKIW_THETA),
            index=4,
            delta=1.0,
        ),
        ValueError,
        "index must be in -4..3",
    ),
    Case(
        "equilibrium_shift x rank",
        lambda: economics.equilibrium_shift(
            mankiw, jnp.ones((2, 1)), jnp.array(MANKIW_THETA), index=0, delta=1.0
        ),
        ValueError,
        "x must have rank 1",
    ),
    Case(
        "relative_energy_error qs scalar",
        lambda: mechanics.relative_energy_error(sy.oscillator, 1.0, 0.0),
        ValueError,
        "qs must have a leading axis of states",
    ),
    Case(
        "relative_energy_error ps shape",
        lambda: mechanics.relative_energy_error(
            sy.oscillator, jnp.ones((3, 2)), jnp.ones((3, 1))
        ),
        ValueError,
        "qs and ps must have the same shape",
    ),
    Case(
        "relative_energy_error ts length",
        lambda: mechanics.relative_energy_error(
            sy.oscillator, jnp.ones(3), jnp.ones(3), jnp.arange(4.0)
        ),
        ValueError,
        r"ts must have shape \(3,\)",
    ),
    Case(
        "greeks_finite_differences sigma=0",
        lambda: finance.greeks_finite_differences(**{**OPTION, "sigma": 0.0}),
        ValueError,
        "sigma must be > 0",
    ),
    Case(
        "greeks_finite_differences step=0",
        lambda: finance.greeks_finite_differences(**OPTION, step=0.0),
        ValueError,
        "step must be > 0",
    ),
    Case(
        "greeks_finite_differences step=1",
        lambda: finance.greeks_finite_differences(**OPTION, step=1.0),
        ValueError,
        r"step must be in \[0, 1\)",
    ),
    Case(
        "greeks_finite_differences step >= sigma",
        lambda: finance.greeks_finite_differences(**OPTION, step=0.5),
        ValueError,
        "sigma - step must be > 0",
    ),
    Case(
        "greeks_finite_differences kind",
        lambda: finance.greeks_finite_differences(**OPTION, kind="straddle"),
        ValueError,
        "kind must be one of 'call', 'put'",
    ),
    # Maxout networks: piece statistics and ties.
    Case(
        "maxout_win_fractions x rank",
        lambda: models.maxout_win_fractions(*_maxout(), jnp.ones(4)),
        ValueError,
        "x must have rank 2",
    ),
    Case(
        "tie_maxout_pieces source out of range",
        lambda: models.tie_maxout_pieces(*_maxout(), source=3),
        ValueError,
        "source must be one of 0, 1, 2",
    ),
    Case(
        "tie_maxout_pieces target == source",
        lambda: models.tie_maxout_pieces(*_maxout(), source=1, target=1),
        ValueError,
        "target must be one of 0, 2",
    ),
    # The attribution convergence and faithfulness summaries.
    Case(
        "completeness_errors steps=()",
        lambda: attribution.completeness_errors(_product, X2, steps=()),
        ValueError,
        "steps must name at least one step count",
    ),
    Case(
        "completeness_errors steps=(0,)",
        lambda: attribution.completeness_errors(_product, X2, steps=(4, 0)),
        ValueError,
        "steps must be an integer >= 1",
    ),
    Case(
        "completeness_errors trapezoid steps=(1,)",
        lambda: attribution.completeness_errors(
            _product, X2, steps=(1,), method="riemann_trapezoid"
        ),
        ValueError,
        "steps must be an integer >= 2",
    ),
    Case(
        "completeness_errors method",
        lambda: attribution.completeness_errors(
            _product, X2, steps=(4,), method="simpson"
        ),
        ValueError,
        "method must be one of",
    ),
    Case(
        "completeness_errors vector f",
        lambda: attribution.completeness_errors(lambda z: z, X2, steps=(4,)),
        ValueError,
        "f must return a scalar",
    ),
    Case(
        "completeness_errors baseline shape",
        lambda: attribution.completeness_errors(
            _product, X2, steps=(4,), baseline=jnp.zeros(3)
        ),
        ValueError,
        r"baseline must have shape \(2,\)",
    ),
    Case(
        "deletion_area scalar",
        lambda: attribution.deletion_area(jnp.asarray(1.0)),
        ValueError,
        "curve must have shape",
    ),
    Case(
        "deletion_area one point",
        lambda: attribution.deletion_area(jnp.ones((3, 1))),
        ValueError,
        r"n >= 2 points, got \(3, 1\)",
    ),
    Case(
        "deletion_area complex",
        lambda: attribution.deletion_area(jnp.ones(3, jnp.complex64)),
        TypeError,
        "curve must be real",
    ),
]
