#!/usr/bin/env bash
# One prepared run on a fresh GPU machine (Python 3.12, torch with CUDA, triton, no package registry), from
# the repository root:   bash benchmarks/gpu_session.sh OUT_DIR
# Installs the package, runs the Triton kernel tests compiled on the GPU (fp32, fp16, bf16, forward and
# every gradient), SyncBatchNorm against BatchNorm, the models under CUDA autocast, compute-sanitizer's memcheck on one small case per
# kernel where it is installed, and the benchmark report in fp16 and bf16; everything goes under OUT_DIR
# (one log per step, steps.txt with each step's exit status, summary.txt). Each step has its own time
# limit, so a slow one cannot starve the rest: at most 9.3 minutes in all. Without CUDA it says so and exits 0.
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_session.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
START=$SECONDS

log() { echo "[$((SECONDS - START))s] $*" | tee -a "$OUT/summary.txt"; }
step() {  # step NAME LIMIT_S COMMAND...: runs it under its own timeout, logs to OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    log "$name: start (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name $rc" >> "$OUT/steps.txt"
    log "$name: exit $rc$([ $rc -eq 124 ] && echo ' (timed out)')"
    tail -n 3 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$OUT/summary.txt"
}

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2> /dev/null; then
    log "no CUDA device here (torch.cuda.is_available() is False): nothing to measure"
    exit 0
fi
python -c "import torch, triton; print(torch.cuda.get_device_name(), 'torch', torch.__version__, 'triton', triton.__version__)" \
    | tee -a "$OUT/summary.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/nvidia-smi.csv" 2>&1

step install 90 pip install -e . --no-build-isolation --no-deps
# Triton kernels compiled on the GPU (the tests run on CUDA when there is one: fp32, fp16 and bf16).
step kernel_tests 120 python -m pytest -q -x -p no:cacheprovider tests/test_cswin_attention.py \
    tests/test_mix_conv_gelu.py tests/test_attention_to_mask.py tests/test_resize_sum.py tests/test_hlg_attention.py \
    tests/test_backends.py
# SyncBatchNorm on two processes (gloo, sharing the GPU) against BatchNorm on the joined batch.
step sync_batchnorm 45 python -m pytest -q -p no:cacheprovider tests/test_train.py -k sync_batchnorm
step model_autocast 45 python benchmarks/gpu_checks.py autocast
if command -v compute-sanitizer > /dev/null; then
    step memcheck 45 compute-sanitizer --tool memcheck --error-exitcode 1 python benchmarks/gpu_checks.py memcheck
else
    log "memcheck: compute-sanitizer is not installed, skipped"
fi
for dtype in float16 bfloat16; do
    step "report_$dtype" 105 python benchmarks/run.py --device cuda --dtype "$dtype" --batch 16 \
        --models hrvit_b1_segformer hrvit_b3_segformer segvit_vit_l_ade20k --train \
        --op-variants b1 b2 b3 --op-sizes 512 1024x2048 --repeats 5 --out "$OUT/report_$dtype"
done
log "done; reports under $OUT/report_float16 and $OUT/report_bfloat16"
