"""Build a nearest-neighbour index over a folder of videos, query it, and save a contact sheet.

    python examples/build_index.py MODEL FOLDER INDEX_DIR [--query VIDEO] [--sheet neighbours.png]

Every indexed video should come back as its own nearest neighbour (score 1.0) -- a quick sanity
check of a model and an index. The same from the shell: `tclr-zoo index build` / `index search`.
"""

import argparse
from pathlib import Path

from tclr_zoo import VideoIndex, contact_sheet, load_model

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov"}

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("model")
parser.add_argument("folder", type=Path)
parser.add_argument("index_dir", type=Path)
parser.add_argument("--query", help="a video to search for (default: the first indexed one)")
parser.add_argument("--sheet", type=Path, help="write a PNG of the query and its neighbours")
parser.add_argument("-k", type=int, default=5)
args = parser.parse_args()

paths = sorted(str(p) for p in args.folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
model = load_model(args.model)
index = VideoIndex.build(model, paths, skip_bad=True)  # unreadable files are listed in index.skipped
index.save(args.index_dir, overwrite=True)  # replaces an index saved there before, never other files
print(f"{index!r} saved to {args.index_dir}; skipped: {index.skipped or 'none'}")

index = VideoIndex.load(args.index_dir)  # checks the sha256 recorded in the manifest
query = args.query or paths[0]
hits = index.search(query, k=args.k, model=model)[0]
for hit in hits:
    print(f"{hit.score:.4f}  {hit.id}")
self_hits = sum(index.search(p, k=1, model=model)[0][0].path == p for p in index.paths)
print(f"{self_hits}/{len(index)} videos are their own nearest neighbour")
if args.sheet:
    contact_sheet(query, hits, args.sheet)
    print(f"wrote {args.sheet}")
