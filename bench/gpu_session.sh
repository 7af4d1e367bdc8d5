#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (docs/gpu.md, "Running on a lent GPU"): build
# mixscore there, run the GPU tests, the GPU benchmark and the sampling breakdown; logs and
# results under $OUT.
#
# On the development machine, once per checkout (the device machine reaches no registry, so
# array-api-compat travels as a wheel; .whl/ is git-ignored):
#     bash bench/gpu_session.sh --prepare
# Then through the device tool, in one call:
#     run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=590)
# (the stages' own timeouts add up to 560 s: build 180, tests 150, benchmark 160, sampling 70)
# and commit $OUT's gpu.json / tests.log numbers with the device name (bench/RESULTS.md).
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation py --abi none --platform any -d .whl "array-api-compat>=1.9"
    ls .whl
    exit
fi

OUT=${OUT:-/tmp/mixscore-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=16
PY=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  nvcc --version | tail -2; $PY -c "import torch; print('torch', torch.__version__)"; } \
    2>&1 | tee "$OUT/device.txt"

# everything installs into /tmp/site (the machine's Python environment may be read-only)
export PYTHONPATH=/tmp/site
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi

start=$(date +%s)
CUDAFLAGS="-Xptxas=-v" MIXSCORE_CUDA_ARCHITECTURES=${MIXSCORE_CUDA_ARCHITECTURES:-90} timeout 180 \
    $PY -m pip install -v --no-deps --no-build-isolation --target /tmp/site . \
    > "$OUT/build.log" 2>&1
build=$?
grep -E "Compiling entry|Used [0-9]+ registers|bytes spill|error" "$OUT/build.log" > "$OUT/ptxas.txt"
echo "build rc=$build in $(( $(date +%s) - start )) s"
[[ $build -eq 0 ]] || { tail -40 "$OUT/build.log"; exit 1; }
$PY -c "import mixscore._cuda as c; print('devices', c.device_count(), \
'fp32 FMA peak', round(c.fp32_fma_peak() / 1e12, 1), 'TFLOP/s')" 2>&1 | tee -a "$OUT/device.txt"

cd /tmp  # import the installed package, not the source tree
repo=$OLDPWD
start=$(date +%s)
timeout 150 $PY -m pytest -p no:cacheprovider -rs -q "$repo/tests/test_gpu.py" \
    "$repo/tests/test_device_sampler.py" "$repo/tests/test_device_models.py" \
    > "$OUT/tests.log" 2>&1
tests=$?
echo "tests rc=$tests in $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout 160 $PY "$repo/bench/gpu_compare.py" --quick --time-limit 130 --json "$OUT/gpu.json" \
    > "$OUT/bench.log" 2>&1
bench=$?
echo "bench rc=$bench in $(( $(date +%s) - start )) s"

start=$(date +%s)
timeout 50 $PY "$repo/bench/gpu_sampler.py" --json "$OUT/sampler.json" > "$OUT/sampler.log" 2>&1
echo "sampler rc=$? in $(( $(date +%s) - start )) s"
for s in naive effective; do  # the draws and covariance-noise kernels in the fused loop
    timeout 10 $PY "$repo/bench/gpu_sampler.py" --sampler $s --steps 10 --rows 64,20000,256 \
        --json "$OUT/sampler_$s.json" >> "$OUT/sampler.log" 2>&1
done

echo "== tests (last lines)"; tail -25 "$OUT/tests.log"
echo "== sampling: fused GPU loop, device loop, pass alone"; tail -12 "$OUT/sampler.log"
echo "== benchmark"; tail -40 "$OUT/bench.log"
