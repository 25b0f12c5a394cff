#!/usr/bin/env bash
# Every check that needs a GPU, in one go (its steps' time limits add up to under 8 minutes),
# ending in one table:
#   bash benchmarks/gpu.sh            # logs and JSON in $OUT, else benchmarks/gpu-out/
# 1. the test suite's device tests (exactness of every kernel on CUDA, eager and compiled,
#    against the CPU's bits; checkpoints across device kinds);
# 2. the quantizer against x * 2.0 on a flat vector and on the operands of a ResNet-20 step;
# 3. `hbfp-dse bench` (FP32 vs emulated ResNet-20 steps) for the main formats and roundings;
# 4. one epoch of ResNet-20 on CIFAR-shaped synthetic data, FP32 and HBFP4.
# Without hbfp-dse importable it installs it into .venv-gpu (beside the system's torch), from
# the package index, or from the wheels in $WHEELS (no index). Record the table in
# benchmarks/RESULTS-gpu.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/gpu-out}
mkdir -p "$out"
py=${PYTHON:-python3}
[ -x .venv-gpu/bin/python ] && py=.venv-gpu/bin/python
if ! "$py" -c "import hbfp_dse, typer, optuna, hypothesis" 2>/dev/null; then
    "$py" -m venv --system-site-packages .venv-gpu || exit 1
    py=.venv-gpu/bin/python
    "$py" -m pip install --quiet --quiet --disable-pip-version-check \
        ${WHEELS:+--no-index --find-links "$WHEELS"} -e '.[test]' || exit 1
fi
unset HBFP_DSE_COMPILE  # compiled kernels are what a GPU runs
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device here')" \
    || exit 1
export PYTHONUNBUFFERED=1
hbfp=("$py" -m hbfp_dse)

step() {  # step NAME SECONDS COMMAND...: stdout in $out/NAME.out, stderr in $out/NAME.log
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$out/$name.out" 2>"$out/$name.log"
    echo "$name $? $((SECONDS - started))" >>"$out/steps.txt"
}
: >"$out/steps.txt"

step tests 120 "$py" -m pytest -q -rs -p no:cacheprovider -k cuda \
    tests/test_compiled.py tests/test_quantize_properties.py tests/test_checkpoints.py
step quantize 60 "$py" benchmarks/quantize.py --devices cuda --numel 16777216 --repeats 20 --json
step operands 90 "$py" benchmarks/operands.py --device cuda --repeats 5 --json
formats=(--number-format hbfp4_b64 --number-format hbfp4_b576 --number-format hbfp4_b64_s16
    --number-format mxfp4_e2m1 --number-format fp8_e4m3)
step bench_nearest 50 "${hbfp[@]}" bench --device cuda --steps 20 "${formats[@]}" --format json
step bench_stochastic 50 "${hbfp[@]}" bench --device cuda --steps 20 "${formats[@]}" \
    --forward-rounding stochastic --backward-rounding stochastic --format json
for schedule in fp32 hbfp4; do
    step "epoch_$schedule" 50 "${hbfp[@]}" train --model resnet20 --dataset synthetic-cifar10 \
        --epochs 1 --batch-size 128 --schedule "$schedule" --device cuda --format json
done
"$py" benchmarks/gpu_table.py "$out"
