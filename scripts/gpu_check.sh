#!/usr/bin/env bash
# Runs on the accelerator machine (see TOOLCHAIN.md): installs the carried wheel, runs the CUDA
# parity tests and the GPU benchmarks, writing results to $OUT. `bash scripts/gpu_check.sh full`
# also runs the whole test suite there.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, ugatit_rs; print(torch.__version__, torch.cuda.get_device_name(0), ugatit_rs.__version__)" | tee -a "$OUT/gpu.txt"
if [ "${1:-}" = "full" ]; then
    timeout 200 python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.txt" | tail -4
elif [ "${1:-}" = "bench" ]; then
    echo "benchmarks only"
else
    timeout 100 python3 -m pytest -q -p no:cacheprovider -k "cuda" tests/test_parity_networks.py tests/test_trainer_parity.py 2>&1 | tee "$OUT/pytest.txt" | tail -3
fi
MD="$OUT/benchmarks_gpu.md"
for args in "--light --amp" "--amp" "--light --opt-ins {\"fused_discriminator\":true}"; do
    # shellcheck disable=SC2086
    timeout 120 python3 bench/train_step.py --device cuda --img-size 256 --ch 64 --n-res 4 --steps 20 --workers 4 $args --markdown "$MD" 2>&1 | grep -E "ratio|error|Error" | head -8
done
