#!/usr/bin/env bash
# CUDA check of the paper recipe (R3D-18, 16x112x112, batch 40, bf16 autocast, channels_last_3d):
# a few pretraining steps on generated 128x160 videos, then clips/s and peak GPU memory
# from results.json. Usage: bench/gpu.sh [STEPS] [BATCH]   (run from the repository root)
# Not run yet: no session so far had a GPU. On a CPU-only machine it runs on the CPU (slowly).
set -euo pipefail
steps=${1:-10}
batch=${2:-40}
out=${OUT:-runs}/gpu_check
python=${PYTHON:-.venv/bin/python}
"$python" -m tclr_zoo.cli pretrain tclr_r3d18_ucf101 --out "$out" --overwrite --no-progress \
    --set data.dataset=synthetic --set data.root="$out/data" \
    --set "data.synthetic={num_classes: 6, groups: 8, clips_per_group: 2, test_groups: 1, frames: 80, height: 128, width: 160}" \
    --set train.epochs=1 --set train.max_steps_per_epoch="$steps" --set train.batch_size="$batch" \
    --set eval.knn=false
"$python" - "$out/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
row = r["history"][-1]
print(f"steps={row['steps']} videos={row['videos']} clips/s={row['clips_per_second']} "
      f"peak_gpu_memory_gb={row['peak_gpu_memory_gb']} (first steps include cuDNN autotuning)")
PY
