"""Classify videos with a model that has a classifier, on PyTorch or on its exported ONNX graph.

    python examples/classify.py MODEL VIDEO [VIDEO ...] [--onnx] [--top-k 3]

A model gets a classifier from `tclr-zoo eval --protocol linear|finetune --save DIR` (or a
fine-tuning recipe); `--onnx` needs `tclr-zoo export DIR --out EXPORT --onnx --head logits`.
"""

import argparse

from tclr_zoo import load_model

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("model")
parser.add_argument("videos", nargs="+")
parser.add_argument("--onnx", action="store_true", help="run the exported graph in onnxruntime")
parser.add_argument("--top-k", type=int, default=3)
args = parser.parse_args()

model = load_model(args.model, backend="onnx" if args.onnx else "torch")
if args.onnx:
    print(f"onnxruntime providers running: {model.providers}")
for video, top in zip(args.videos, model.classify(args.videos, top_k=args.top_k)):
    print(video + ": " + ", ".join(f"{label} ({p:.2f})" for label, p in top))
