#!/usr/bin/env bash
# CUDA part of the benchmark suite, for one H100-class GPU (about 8 minutes; each part bounded by its
# own timeout so one slow part cannot eat the others' time). Run from the repo root:
#   bench/gpu.sh                 # prints the rows; OUT=DIR (default runs/gpu) also gets them as JSON lines
#   DRY=1 bench/gpu.sh           # the same code on the CPU with tiny shapes: a structure check only
# Parts, most important first (a session short of device time loses the last ones):
#   1. the device and library versions;
#   2. P8: the paper recipe end to end at batch 40 on generated 320x240 H.264 videos (loader workers
#      decode, the GPU crops, resizes and augments, next batch prefetched on a side stream), 12 steady
#      steps with no checkpoint against the model-only step (target >= 85%), with the workers, the wait
#      for data and the GPU utilisation; then the same with train.compile: compile time, end to end
#      compiled against eager, and one step's losses compiled against eager (bench/p8_pretrain.py).
#      It replaces the former 2-epoch CLI run of the recipe, whose clips/s mixed in loader start-up and
#      checkpoint writes;
#   3. P7: embedding end to end, 8 decode workers, against the serial path and its decode-only and
#      forward-only bounds (bench/p7_embed_workers.py; unmeasured: written without a GPU);
#   4. P9: tclr-zoo embed under torchrun (one process per visible GPU) writes what one process writes
#      (bench/torchrun_embed.py; unmeasured: written without a GPU);
#   5. P1 on CUDA: the TCLR pretraining step at the paper's shapes (R3D-18, 16x112x112, 40 videos x
#      10 clips) and at 8 videos, A as the recipe runs on CUDA (bf16 autocast + channels_last_3d, all
#      clip groups in one pass) against the reference-style fp32 step, with model FLOP utilisation;
#   6. inference at fp32/bf16, with and without channels_last_3d and torch.compile;
#   7. P1 against the reference's own mixed precision (fp16 autocast + GradScaler), and with a
#      torch.compile-d forward (already quoted in BENCHMARKS.md).
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
    part 120 "P8 (dry, CPU)" "$python" -m bench.p8_pretrain --dry --json "$rows"
    part 120 "P7 (dry, CPU)" "$python" -m bench.p7_embed_workers --quick --json "$rows"
    part 120 "P9 (dry, CPU, 2 gloo processes)" "$python" -m bench.torchrun_embed --videos 6 --json "$rows"
else
    # P8: 80 videos of 320x240 written on all cores (~10 s), 3 + 12 steps eager, the model-only step,
    # then torch.compile (compile ~1-2 min, then the same steps): about 3 minutes in all.
    part 210 "P8: pretraining end to end vs the model-only step, eager and compiled" "$python" -m bench.p8_pretrain \
        --steps 12 --compile --json "$rows"
    # P7: 32 videos of 320x240 x 200 frames written (~15 s), embed with 8 decode workers against the
    # serial path, decode-only and forward-only bounds, 32-px and 112-px r3d_10_025 (target: A >= 80%
    # of the lower bound). Never run on a GPU yet.
    part 120 "P7: embedding end to end with decode workers vs its bounds" "$python" -m bench.p7_embed_workers \
        --device cuda --videos 32 --workers 8 --json "$rows"
    # P9: 16 short videos through embed in one process and under torchrun (one process per GPU, NCCL
    # when there are several): same paths, order and vectors. About 40 s, mostly process start-up.
    part 90 "P9: embed under torchrun vs one process" "$python" -m bench.torchrun_embed --device cuda --json "$rows"
    part 180 "P1 on CUDA: 40 and 8 videos" "$python" -m bench.p1_train_step --device cuda --shapes 40,8 \
        --repeats 3 --json "$rows"
    part 100 "inference" "$python" -m bench.gpu_inference --batch 32 --repeats 10 --json "$rows"
    # last: already quoted in BENCHMARKS.md, so a session short of device time loses this part first
    part 130 "P1 on CUDA: fp16 reference, compiled forward" "$python" -m bench.p1_train_step --device cuda \
        --shapes 8 --no-plain --fp16-baseline --compile --repeats 3 --json "$rows"
fi

exit $status
