#!/usr/bin/env bash
# CUDA part of the benchmark suite, for one H100-class GPU (about 5-8 minutes). Run from the repo root:
#   bench/gpu.sh                 # prints the tables; BENCH_JSON=FILE also writes P1's rows as JSON
# 1. the device and library versions; 2. P1 on CUDA: the TCLR pretraining step at the paper's shapes
#    (R3D-18, 16x112x112, 40 videos x 10 clips) and at 8 videos, bf16 + channels_last_3d against the
#    reference-style fp32 step, with model FLOP utilisation; 3. inference at fp32/bf16, with and
#    without channels_last_3d and torch.compile; 4. a short pretraining run of the paper recipe
#    (clips/s and peak GPU memory from results.json).
# Not run yet: no session so far had a GPU. It never downloads anything (the image is offline).
set -euo pipefail
python=${PYTHON:-python}
out=${OUT:-runs}
"$python" - <<'PY'
import torch, torchvision
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, cuda {torch.version.cuda}, "
      f"device {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE'}")
PY
echo "== P1 on CUDA"
"$python" -m bench --only P1 --device cuda ${BENCH_JSON:+--json "$BENCH_JSON"}
echo "== inference"
"$python" -m bench.gpu_inference --batch 32 --repeats 20
echo "== paper recipe, 10 steps"
"$python" -m tclr_zoo.cli pretrain tclr_r3d18_ucf101 --out "$out/gpu_check" --overwrite --no-progress \
    --set data.dataset=synthetic --set data.root="$out/gpu_check/data" \
    --set "data.synthetic={num_classes: 6, groups: 8, clips_per_group: 2, test_groups: 1, frames: 80, height: 128, width: 160}" \
    --set train.epochs=1 --set train.max_steps_per_epoch=10 --set train.batch_size=40 --set eval.knn=false
"$python" - "$out/gpu_check/results.json" <<'PY'
import json, sys
row = json.load(open(sys.argv[1]))["history"][-1]
print(f"steps={row['steps']} clips/s={row['clips_per_second']} peak_gpu_memory_gb={row['peak_gpu_memory_gb']} "
      "(first steps include cuDNN autotuning)")
PY
