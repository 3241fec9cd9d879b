#!/usr/bin/env bash
# Runs on the accelerator machine (see TOOLCHAIN.md): installs the carried wheel, runs the test
# suite (the parity tests then cover CUDA too) and the GPU benchmarks, writing results to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, ugatit_rs; print(torch.__version__, torch.cuda.get_device_name(0), ugatit_rs.__version__)" | tee -a "$OUT/gpu.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider -x tests/test_parity_networks.py tests/test_trainer_parity.py tests/test_interop.py tests/test_errors.py 2>&1 | tee "$OUT/pytest.txt" | tail -4
MD="$OUT/benchmarks_gpu.md"
for args in "--light --amp" "--light --opt-ins {\"fused_discriminator\":true}" "" "--opt-ins {\"fused_discriminator\":true}"; do
    # shellcheck disable=SC2086
    timeout 150 python3 bench/train_step.py --device cuda --img-size 256 --ch 64 --n-res 4 --steps 20 --workers 4 $args --markdown "$MD" 2>&1 | tail -3
done
ls -la "$OUT"
