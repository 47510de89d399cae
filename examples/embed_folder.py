"""Embed every video in a folder and save the vectors with their paths.

    python examples/embed_folder.py MODEL FOLDER OUT.safetensors [--head retrieval|backbone|projection]

MODEL is anything load_model accepts: a saved folder (e.g. runs/demo/model after `make demo`),
local-dir:PATH, a training checkpoint (.pt), hf-hub:ORG/REPO[@REVISION] or a published name such as
r3d_18.tclr_ucf101.
"""

import argparse
import json
from pathlib import Path

from safetensors.torch import save_file

from tclr_zoo import load_model

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov"}

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("model")
parser.add_argument("folder", type=Path)
parser.add_argument("out", type=Path)
parser.add_argument("--head", default="retrieval", choices=["retrieval", "backbone", "projection"])
args = parser.parse_args()

paths = sorted(str(p) for p in args.folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
if not paths:
    raise SystemExit(f"no videos in {args.folder}")
model = load_model(args.model)
print(model, f"-> {len(paths)} videos")
vectors = model.embed(paths, head=args.head, progress=True)  # [N, D]; windows of long videos are averaged
metadata = {"paths": json.dumps(paths), "model_id": model.model_id, "revision": str(model.revision)}
save_file({"embeddings": vectors.contiguous()}, str(args.out), metadata=metadata)
print(f"wrote {args.out}: {tuple(vectors.shape)}")

# per-window vectors with timestamps, e.g. to find *where* in a long video something happens
windows = model.embed_windows(paths[0], head=args.head)
for start, end in zip(windows.starts[:3], windows.ends[:3]):
    print(f"{Path(paths[0]).name}: window {start:6.2f}-{end:6.2f} s")
