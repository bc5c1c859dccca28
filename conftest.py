"""Strict test configuration shared by every test module.

- NumPy-style rank promotion raises, so silent broadcasting bugs fail loudly.
- Warnings are errors (exceptions are listed in pyproject.toml, each with a reason).
- Compiled XLA programs persist in the git-ignored ``.jax_cache`` folder (or
  ``$JAX_COMPILATION_CACHE_DIR``), so a second run of the suite skips most compilation.
- Library tests compile with XLA's cheap optimisation level; experiment runs do not.
"""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent
CACHE_DIR = os.environ.get("JAX_COMPILATION_CACHE_DIR", ROOT / ".jax_cache")

# Test modules that run a shipped experiment end to end (tests/test_NAME.py).
END_TO_END_MODULES = {
    f"test_{path.stem}" for path in (ROOT / "experiments").glob("[!_]*.py")
}

# Toy experiments for the runner's tests; registered by those tests, not collected.
collect_ignore = ["tests/fixtures"]

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", str(CACHE_DIR))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def key() -> jax.Array:
    """A fixed PRNG key, so every test is deterministic."""
    return jax.random.key(0)


@pytest.fixture(scope="session")
def child_env() -> dict[str, str]:
    """The environment for a ``chainlab`` or Python subprocess: the CPU, and this
    suite's compilation cache for every program, so one compiled once is loaded
    after."""
    return os.environ | {
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(CACHE_DIR),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled (finite differences need them)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _compile_settings(request):
    """Per test module: how much XLA optimises, and a clean in-memory cache after.

    Library tests compile many small programs that run for microseconds, so XLA's
    cheap optimisation level (``jax_disable_most_optimizations``) makes them about a
    fifth faster; the end-to-end tests of experiments train for hundreds of steps and
    keep full optimisation. When a module ends its compiled programs are dropped: a
    long-lived process otherwise slows down as its in-memory caches grow.
    """
    end_to_end = request.module.__name__ in END_TO_END_MODULES
    jax.config.update("jax_disable_most_optimizations", not end_to_end)
    yield
    jax.clear_caches()
