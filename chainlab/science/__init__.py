"""The chain rule in science: economics (implicit differentiation, IS-LM), mechanics
(Hamiltonian flow and integrators) and finance (Black-Scholes and the heat equation)."""

from chainlab.science import economics, finance, mechanics

__all__ = ["economics", "finance", "mechanics"]
