"""Strict test configuration shared by every test module.

- NumPy-style rank promotion raises, so silent broadcasting bugs fail loudly.
- Warnings are errors (exceptions are listed in pyproject.toml, each with a reason).
- Compiled XLA programs persist in the git-ignored ``.jax_cache`` folder, so a second
  run of the suite skips most compilation.
"""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

CACHE_DIR = Path(__file__).resolve().parent.parent / ".jax_cache"

# Toy experiments for the runner's tests; registered by those tests, not collected.
collect_ignore = ["fixtures"]

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", str(CACHE_DIR))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def key() -> jax.Array:
    """A fixed PRNG key, so every test is deterministic."""
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled (finite differences need them)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches():
    """Drop each module's compiled programs when it ends: a long-lived process
    otherwise slows down as its in-memory caches grow."""
    yield
    jax.clear_caches()
