#!/usr/bin/env bash
# Runs on the accelerator machine (see TOOLCHAIN.md): installs the carried wheel, runs the test
# suite (the parity tests then cover CUDA too) and the network timing, writing results to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, ugatit_rs; print(torch.__version__, torch.cuda.get_device_name(0), ugatit_rs.__version__)" | tee -a "$OUT/gpu.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.txt" | tail -5
for light in "--light" ""; do
    timeout 120 python3 bench/networks_forward.py --device cuda --img-size 256 --ch 64 $light 2>&1 | tee -a "$OUT/bench_networks.jsonl"
done
