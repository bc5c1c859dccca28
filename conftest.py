"""Strict test configuration shared by every test module.

- NumPy-style rank promotion raises, so silent broadcasting bugs fail loudly.
- Warnings are errors (exceptions are listed in pyproject.toml, each with a reason).
- Compiled XLA programs persist in the git-ignored ``.jax_cache`` folder (or
  ``$JAX_COMPILATION_CACHE_DIR``), so a second run of the suite skips most compilation.
- Everything compiles with XLA's cheap optimisation level and its older CPU fusion
  code generator, both quicker to compile (paper-scale runs use XLA's defaults).
"""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# XLA's CPU fusion emitters compile each program about a third slower than the older
# elemental code generator; tests run tiny programs, so compilation is what they cost.
# Set before the CPU backend starts; subprocesses inherit it through child_env.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_cpu_use_fusion_emitters=false"]
).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent
CACHE_DIR = os.environ.get("JAX_COMPILATION_CACHE_DIR", ROOT / ".jax_cache")

# Toy experiments for the runner's tests; registered by those tests, not collected.
collect_ignore = ["tests/fixtures"]

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_compilation_cache_dir", str(CACHE_DIR))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
# Tests compile many programs that run for milliseconds (quick experiment variants
# included: compiling is most of their time), so XLA's cheap optimisation level
# makes the suite about a third faster. Subprocesses get it through child_env.
jax.config.update("jax_disable_most_optimizations", True)


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
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
    }


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled (finite differences need them)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _fresh_caches():
    """Drop a test module's compiled programs when it ends: a long-lived process
    otherwise slows down as its in-memory caches grow."""
    yield
    jax.clear_caches()
