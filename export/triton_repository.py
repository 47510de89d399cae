#!/usr/bin/env python
"""Write a Triton Inference Server model repository for a ``tclr-zoo export --onnx`` folder.

    python export/triton_repository.py EXPORT_DIR --out REPO [--name NAME]
        [--platform onnxruntime|tensorrt] [--plan model.plan] [--fp16 | --int8]
        [--max-batch N] [--preferred-batch 4,8] [--queue-delay-us 100]
        [--instances 1] [--kind KIND_AUTO|KIND_GPU|KIND_CPU] [--overwrite]

Result::

    REPO/NAME/config.pbtxt       platform, max_batch_size, input "video", output <head>, dynamic batching,
                                 the model's channel order and preprocessing as parameters
    REPO/NAME/1/model.onnx       (onnxruntime) the export's fp32 graph (--fp16, --int8: that graph), byte for byte
    REPO/NAME/1/model.plan       (tensorrt) the engine from export/build_trt_engine.py (--plan; an int8
                                 engine comes from build_trt_engine.py --int8, the repository is the same)
    REPO/NAME/PREPROCESSING.md   how a client must prepare "video" (from config.json's preprocessing)

The generator is ``tclr_zoo.export.triton`` (also behind ``tclr-zoo export --triton``); this script
adds the TensorRT-plan options. Exit status 2 with one line on stderr for bad arguments, a folder
that is not an export or an export without an ONNX graph.
"""

from __future__ import annotations

import argparse
import sys

from tclr_zoo.export.triton import PLATFORMS, TritonError, parse_batches, write_model_repository


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export_dir", help="a `tclr-zoo export --onnx` folder")
    p.add_argument("--out", required=True, help="the Triton model repository (created if missing)")
    p.add_argument("--name", help="model name in the repository (default: the export folder's name)")
    p.add_argument("--platform", choices=sorted(PLATFORMS), default="onnxruntime")
    p.add_argument("--plan", help="TensorRT engine (model.plan) for --platform tensorrt")
    graph = p.add_mutually_exclusive_group()
    graph.add_argument("--fp16", action="store_true", help="onnxruntime: serve onnx/model.fp16.onnx")
    graph.add_argument("--int8", action="store_true",
                       help="onnxruntime: serve onnx/model.int8.onnx (export with --int8 --calibrate SOURCE)")
    p.add_argument("--max-batch", type=int, help="max_batch_size (default and upper bound: the export's)")
    p.add_argument("--preferred-batch", help="comma-separated preferred batch sizes (default: max/2,max)")
    p.add_argument("--queue-delay-us", type=int, default=100, help="max_queue_delay_microseconds")
    p.add_argument("--instances", type=int, default=1, help="instance_group count")
    p.add_argument("--kind", choices=["KIND_AUTO", "KIND_GPU", "KIND_CPU"], default=None,
                   help="instance_group kind (default: KIND_AUTO for onnxruntime, KIND_GPU for tensorrt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing REPO/NAME folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model_dir = write_model_repository(
            args.export_dir, args.out, name=args.name, platform=args.platform, plan=args.plan, fp16=args.fp16,
            int8=args.int8, max_batch=args.max_batch, queue_delay_us=args.queue_delay_us, instances=args.instances,
            kind=args.kind, overwrite=args.overwrite,
            preferred_batch=None if args.preferred_batch is None else parse_batches(args.preferred_batch))
    except TritonError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {model_dir} (serve with: tritonserver --model-repository {model_dir.parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
