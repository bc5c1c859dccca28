"""The library stands apart from the runner and imports from a plain source checkout."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MATHEMATICAL_MODULES = [
    "activations",
    "attention",
    "attribution",
    "embedding",
    "flows",
    "gradcheck",
    "layers",
    "losses",
    "models",
    "normalization",
    "paths",
    "regularizers",
    "robustness",
    "science",
    "validation",
]
# What the mathematical modules may import: jax, flax, optax, chex, numpy (and what
# those pull in). Everything the runner or experiments use is blocked.
BLOCKED = [
    "chainlab.runner",
    "ml_collections",
    "sklearn",
    "scipy",
    "matplotlib",
    "tqdm",
    "orbax",
    "torch",
]

SOURCE_CHECKOUT = f"""
import sys
# Forget the editable install: import from the folder alone, as with PYTHONPATH=.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__name__]
sys.path.insert(0, {str(ROOT)!r})
"""


def _run(code: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", SOURCE_CHECKOUT + code],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_mathematical_modules_import_without_the_runner_or_its_packages():
    _run(
        f"""
for name in {BLOCKED!r}:
    sys.modules[name] = None  # importing it now raises ImportError
import importlib
for module in {MATHEMATICAL_MODULES!r}:
    importlib.import_module("chainlab." + module)
assert "chainlab.runner" not in [m for m in sys.modules if sys.modules[m] is not None]
assert not [m for m in sys.modules if m.startswith("chainlab.runner.")]
"""
    )


def test_import_chainlab_is_cheap_and_exposes_submodules_lazily():
    _run(
        """
import chainlab
assert "chainlab.regularizers" not in sys.modules
assert "chainlab.runner" not in sys.modules
assert callable(chainlab.regularizers.jacobian_penalty)
assert callable(chainlab.science.economics.comparative_statics)
assert "chainlab.runner" not in sys.modules
assert callable(chainlab.run)
"""
    )
