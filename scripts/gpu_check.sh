#!/usr/bin/env bash
# Runs on the accelerator machine (see TOOLCHAIN.md): installs the carried wheel, runs the CUDA
# parity tests and the GPU benchmarks, writing results to $OUT. `bash scripts/gpu_check.sh full`
# also runs the whole test suite there; `dist` measures one NCCL rank against the single-process
# trainer (docs/distributed.md); `cyclegan` times the CycleGAN step against the reference loop at
# their 256 px configuration (docs/cyclegan.md); `speed` is issue #15's run: parity on CUDA, the
# step and inference benchmarks with the opt-ins (cuda_graph, bf16, channels_last), the bf16
# quality runs (scored afterwards here: scripts/bf16_quality.py score) and profiles. The
# metrics' Inception weights (87 MB) exceed what a device call can carry, so the GPU
# feature-extraction benchmark needs them installed there another way.
#
# Here first: `bash scripts/device_wheel.sh` (a 2 MB wheel for the device's Python 3.12 in .whl/;
# the device machine builds nothing), then the device tool's `run` with carry [".whl"] and the
# command `bash scripts/gpu_check.sh speed`.
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
elif [ "${1:-}" = "cyclegan" ]; then
    for cfg in "--img-size 256 --ngf 64 --n-blocks 9" "--img-size 128 --ngf 64 --n-blocks 6"; do
        # shellcheck disable=SC2086
        timeout 200 python3 bench/cyclegan_step.py --device cuda $cfg --steps 20 --warmup 5 2>&1 | tee -a "$OUT/cyclegan_step.md" | tail -3
    done
    exit 0
elif [ "${1:-}" = "speed" ]; then
    # Issue #15. Ordered by value; a part starts only if its timeout still fits the one-call
    # budget (SPEED_BUDGET seconds, below the device tool's 600 s), so a cut keeps the most.
    BUDGET=${SPEED_BUDGET:-560}
    part() {  # part TIMEOUT COMMAND...: runs COMMAND under TIMEOUT if it fits what is left
        local limit=$1; shift
        if [ $((SECONDS + limit)) -gt "$BUDGET" ]; then
            echo "skipped (budget): $*" | tee -a "$OUT/skipped.txt"; return 0
        fi
        timeout "$limit" "$@"
    }
    # With the CUDA paths no CPU run reaches: the translator's threads beside a CUDA generator,
    # share_memory() refused for a CUDA network in a container.
    part 110 python3 -m pytest -q -p no:cacheprovider -k "cuda or replay or eagerly or share_memory" tests/test_parity_networks.py \
        tests/test_trainer_parity.py tests/test_cuda_graph.py tests/test_training_run.py tests/test_experience.py \
        tests/test_sturdiness.py -s 2>&1 | tee "$OUT/pytest.txt" | grep -E "passed|failed|cuda_graph vs"
    MD="$OUT/benchmarks_gpu.md"
    COMMON="--device cuda --img-size 256 --ch 64 --n-res 4 --steps 15 --warmup 5 --rounds 1 --workers 4 --markdown $MD"
    for args in "--light --amp" "--light --opt-ins {\"cuda_graph\":true}" "--opt-ins {\"cuda_graph\":true}" \
                "--light --opt-ins {\"precision\":\"bf16\",\"cuda_graph\":true}" "--light --opt-ins {\"precision\":\"bf16\"}" "--amp"; do
        # shellcheck disable=SC2086
        part 90 python3 bench/train_step.py $COMMON $args 2>&1 | grep -E "step_ratio|mem_ratio|reserved_ratio|amp.*ratio|replays|Error|Warning" | head -8
    done
    part 150 python3 scripts/bf16_quality.py train --device cuda --out "$OUT/bf16_quality" 2>&1 | tail -4
    part 90 python3 bench/profile_step.py --device cuda --img-size 256 --ch 64 --n-res 4 --light --out "$OUT/profile_light_256.md" 2>&1 | tail -2
    for args in "--light --opt-ins {\"channels_last\":true}" "--light --opt-ins {\"precision\":\"bf16\",\"channels_last\":true,\"cuda_graph\":true}"; do
        # shellcheck disable=SC2086
        part 90 python3 bench/train_step.py $COMMON $args 2>&1 | grep -E "step_ratio|mem_ratio|reserved_ratio|Error" | head -4
    done
    echo "speed run: ${SECONDS} s" | tee -a "$OUT/gpu.txt"
    exit 0
elif [ "${1:-}" = "dist" ]; then
    # Issue #11: one NCCL rank vs the single-process trainer, same config (overhead target <= 5 %).
    python3 -c "from ugatit_rs import _native; _native.write_demo_dataset('/tmp/dp/demo', 64, 4, 256, 0)"
    FLAGS="--dataset /tmp/dp/demo --light true --img_size 256 --device cuda --iteration 80 --save_freq 1000 --print_freq 1000 --num_workers 4 --no_progress"
    # shellcheck disable=SC2086
    timeout 200 python3 -m ugatit_rs train $FLAGS --result_dir /tmp/dp/single > "$OUT/dp_single.txt" 2>&1
    # shellcheck disable=SC2086
    timeout 200 python3 -m torch.distributed.run --nproc_per_node=1 -m ugatit_rs train $FLAGS --result_dir /tmp/dp/nccl > "$OUT/dp_nccl.txt" 2>&1
    python3 - <<'PY' | tee "$OUT/dp_overhead.txt"
import json
def step_time(run):
    t = [json.loads(line)["time"] for line in open(f"/tmp/dp/{run}/demo/log.jsonl") if '"d_loss"' in line]
    return (t[-1] - t[19]) / (len(t) - 20)
single, nccl = step_time("single"), step_time("nccl")
print(f"single process {single * 1000:.1f} ms/step, one NCCL rank {nccl * 1000:.1f} ms/step, overhead {100 * (nccl / single - 1):.1f} %")
PY
    exit 0
else
    timeout 100 python3 -m pytest -q -p no:cacheprovider -k "cuda" tests/test_parity_networks.py tests/test_trainer_parity.py 2>&1 | tee "$OUT/pytest.txt" | tail -3
fi
MD="$OUT/benchmarks_gpu.md"
for args in "--light --amp" "--amp" "--light --opt-ins {\"fused_discriminator\":true}"; do
    # shellcheck disable=SC2086
    timeout 120 python3 bench/train_step.py --device cuda --img-size 256 --ch 64 --n-res 4 --steps 20 --workers 4 $args --markdown "$MD" 2>&1 | grep -E "ratio|error|Error" | head -8
done
