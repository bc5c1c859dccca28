"""The chain rule in science: economics (implicit differentiation, IS-LM), mechanics
(Hamiltonian flow, integrators and one RK4), named mechanical systems, Hamiltonian
neural networks, and finance (Black-Scholes and the heat equation)."""

from chainlab.science import (
    economics,
    finance,
    hamiltonian_network,
    mechanics,
    systems,
)

__all__ = ["economics", "finance", "hamiltonian_network", "mechanics", "systems"]
