#!/usr/bin/env bash
# CUDA part of the benchmark suite, for one H100-class GPU (about 6 minutes, each part bounded by its
# own timeout so one slow part cannot eat the others' time). Run from the repo root:
#   bench/gpu.sh                 # prints the rows; OUT=DIR (default runs/gpu) also gets them as JSON lines
#   DRY=1 bench/gpu.sh           # the same code on the CPU with tiny shapes: a structure check only
# Parts, most important first:
#   1. the device and library versions;
#   2. P1 on CUDA: the TCLR pretraining step at the paper's shapes (R3D-18, 16x112x112, 40 videos x
#      10 clips) and at 8 videos, A as the recipe runs on CUDA (bf16 autocast + channels_last_3d, all
#      clip groups in one pass) against the reference-style fp32 step, with model FLOP utilisation;
#   3. inference at fp32/bf16, with and without channels_last_3d and torch.compile;
#   4. P1 against the reference's own mixed precision (fp16 autocast + GradScaler), and with a
#      torch.compile-d forward;
#   5. a short pretraining run of the paper recipe on generated videos (408 videos, batch 40: 2 epochs
#      of 10 steps), with clips/s and peak GPU memory from results.json.
# Last run: bench/results/gpu_h100_2026-11-26.* (BENCHMARKS.md quotes it).
# It never downloads anything (the GPU machine is offline); PyAV must be importable.
set -uo pipefail
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
out=${OUT:-runs/gpu}
mkdir -p "$out"
rows="$out/gpu_rows.jsonl"
status=0
part() {  # part SECONDS NAME COMMAND...: run one part under a timeout; a failure does not stop the rest
    local seconds=$1 name=$2
    shift 2
    echo "== $name (at most ${seconds}s)"
    local start=$SECONDS
    timeout --signal=INT --kill-after=10 "$seconds" "$@" || { echo "!! $name: exit $?"; status=1; }
    echo "== $name took $((SECONDS - start))s"
}

"$python" - <<'PY'
import torch, torchvision
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, cuda {torch.version.cuda}, "
      f"device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE'}")
PY

if [[ "${DRY:-0}" == 1 ]]; then
    part 120 "P1 (dry, CPU)" "$python" -m bench.p1_train_step --dry-cuda --json "$rows"
    part 120 "inference (dry, CPU)" "$python" -m bench.gpu_inference --dry-cpu --batch 2 --repeats 2 --json "$rows"
    device_set=(--set train.device=cpu --set model.arch=r3d_10_025 --set data.size=32
                --set train.batch_size=2 --set train.max_steps_per_epoch=2 --set data.workers=1)
    synthetic="{num_classes: 6, groups: 8, clips_per_group: 2, test_groups: 1, frames: 80, height: 128, width: 160}"
else
    part 180 "P1 on CUDA: 40 and 8 videos" "$python" -m bench.p1_train_step --device cuda --shapes 40,8 \
        --repeats 3 --json "$rows"
    part 100 "inference" "$python" -m bench.gpu_inference --batch 32 --repeats 10 --json "$rows"
    part 130 "P1 on CUDA: fp16 reference, compiled forward" "$python" -m bench.p1_train_step --device cuda \
        --shapes 8 --no-plain --fp16-baseline --compile --repeats 3 --json "$rows"
    # 408 training videos: 10 steps of 40 per epoch, so the second epoch shows the steady state
    # (the 2026-11-26 run had 2-step epochs, dominated by loader start-up and checkpoint writes).
    device_set=(--set data.workers=12)
    synthetic="{num_classes: 6, groups: 35, clips_per_group: 2, test_groups: 1, frames: 72, height: 128, width: 160}"
fi

part 180 "paper recipe, 2 epochs on generated videos" "$python" -m tclr_zoo.cli pretrain recipes/tclr_r3d18_ucf101.yaml \
    --out "$out/recipe" --overwrite --no-progress --set data.dataset=synthetic --set data.root="$out/recipe_data" \
    --set "data.synthetic=$synthetic" --set train.epochs=2 --set eval.knn=false "${device_set[@]}"
"$python" - "$out/recipe/results.json" <<'PY' || status=1
import json, sys
row = json.load(open(sys.argv[1]))["history"][-1]
print(f"recipe: steps={row['steps']} clips/s={row['clips_per_second']} "
      f"peak_gpu_memory_gb={row.get('peak_gpu_memory_gb')} (the first steps include cuDNN autotuning)")
PY
exit $status
