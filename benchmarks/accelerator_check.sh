#!/usr/bin/env bash
# chainlab on an accelerator (GPU or TPU), in one short script.
#
# Tests and CI run on the CPU; this script checks a release on whatever accelerator
# JAX sees. It prints the devices, runs the library's derivative tests there (float64
# included), every experiment's quick variant and the Jacobian-regularization step
# timings, then packs the reports into "$OUT/accelerator_check.tar.gz". Each part has
# a time limit; the exit status says whether every part passed.
#
# The tests compare float32 results to 1e-5, so they run with full-precision matrix
# products: GPUs multiply float32 matrices in TF32 by default (about 1e-3 relative),
# which moves 11 of them past their tolerances (flow round trips through convolutions,
# chunked vs unchunked integrated gradients, the blur baseline). The experiments run
# with JAX's defaults.
#
# Usage (from the repository root, after pip install -e .):
#   OUT=/tmp/accelerator-check bash benchmarks/accelerator_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/chainlab-accelerator-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg XLA_PYTHON_CLIENT_PREALLOCATE=false
# Test processes share the accelerator; pytest-xdist spreads them where installed.
parallel=()
python3 -c "import xdist" 2>/dev/null && parallel=(-n 8)
status=0
step() {  # step NAME COMMAND...: run, time and log one part; remember failures
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  "$@" || { echo "!! $name failed"; status=1; }
  echo "== $name: $((SECONDS - start)) s"
}

step devices python3 -c "import jax; print(jax.__version__, jax.devices())"
# Derivative rules, flows and penalties on the accelerator, in float32 and float64.
step tests timeout 240 env JAX_PLATFORMS="" JAX_DEFAULT_MATMUL_PRECISION=highest \
  python3 -m pytest -q --maxfail=10 -p no:cacheprovider -p no:benchmark \
  "${parallel[@]}" -o addopts="" tests/test_activations.py tests/test_layers.py \
  tests/test_losses.py tests/test_normalization.py tests/test_attention.py \
  tests/test_regularizers.py tests/test_flows.py tests/test_attribution.py \
  tests/test_gradcheck.py tests/test_economics.py tests/test_mechanics.py \
  tests/test_finance.py
step quick timeout 400 chainlab reproduce --variant quick --workdir "$OUT/quick"
step jacobian_steps timeout 90 \
  python3 benchmarks/jacobian_vs_pytorch.py --repeats 100 --rounds 1

(cd "$OUT" && find . -name '*.md' -o -name '*.json' -o -name '*.txt' \
  | tar -czf accelerator_check.tar.gz -T -)
exit $status
