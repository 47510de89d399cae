#!/usr/bin/env python
"""Build a TensorRT engine (``model.plan``) from a ``tclr-zoo export --onnx`` folder.

    python export/build_trt_engine.py EXPORT_DIR [--out model.plan] [--fp16] [--int8] [--opt-batch N]
        [--max-batch N] [--timing-cache trt.cache] [--workspace-gib 4]

- Parses ``onnx/model.onnx`` (or, with ``--fp16-graph``, ``onnx/model.fp16.onnx``) with the TensorRT
  ONNX parser; one optimisation profile on input ``video``: min batch 1, opt ``--opt-batch``, max the
  export's ``max_batch`` (or ``--max-batch``, which may not exceed it).
- ``--fp16``: TensorRT 8.x-10.x set ``BuilderFlag.FP16`` on the fp32 graph.  TensorRT >= 11 builds
  strongly-typed networks only (no FP16 builder flag): precision comes from the graph, so ``--fp16``
  there uses ``onnx/model.fp16.onnx`` (export with ``--fp16``) and fails if the export lacks it.
- ``--int8``: parses ``onnx/model.int8.trt.onnx`` (export with ``--int8 --calibrate SOURCE``), the QDQ
  graph whose symmetric int8 scales came from ``tclr-zoo export``'s calibration and passed its accuracy
  gate. Explicit quantization: the scales are in the graph, so there is no calibrator and no calibration
  cache here. TensorRT 8.x-10.x build it with ``BuilderFlag.INT8`` (add ``--fp16`` to let the layers
  outside Q/DQ pairs run in float16); TensorRT >= 11 builds it strongly typed (those layers stay float32).
- ``--timing-cache PATH``: loaded if it exists, saved after the build (rebuilds are much faster).

Run it on the machine (GPU + TensorRT version) that will serve the engine: a plan is tied to both.
Exit status 2 with one line on stderr if TensorRT is not installed or the folder is not an ONNX export;
1 if TensorRT fails to parse the graph or build the engine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class UsageError(Exception):
    pass


def _export(export_dir: Path) -> dict:
    cfg = export_dir / "config.json"
    try:
        config = json.loads(cfg.read_text())
    except (OSError, ValueError):
        raise UsageError(f"{export_dir}: not a tclr-zoo export folder (no readable config.json)") from None
    exp = config.get("export") if isinstance(config, dict) else None
    if not isinstance(exp, dict) or not exp.get("onnx"):
        raise UsageError(f"{export_dir}: no ONNX graph in this export (run `tclr-zoo export ... --onnx`)")
    return exp


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise UsageError("TensorRT is not installed (pip install tensorrt, or use the NGC TensorRT/Triton "
                         "container); this script only runs where TensorRT and an NVIDIA GPU are present") from None
    return trt


def build(args: argparse.Namespace) -> Path:
    export_dir = Path(args.export_dir)
    exp = _export(export_dir)
    if args.int8 and not (export_dir / (exp["onnx"].get("int8_trt") or "missing")).is_file():  # before TensorRT
        raise UsageError(f"{export_dir}: no int8 TensorRT graph (onnx/model.int8.trt.onnx); re-export with "
                         "`tclr-zoo export ... --int8 --calibrate SOURCE`")
    trt = _import_tensorrt()
    major = int(trt.__version__.split(".")[0])
    strongly_typed = not hasattr(trt.BuilderFlag, "FP16")  # TensorRT >= 11: weak typing removed
    if args.int8 and (args.fp16_graph or (args.fp16 and strongly_typed)):
        raise UsageError("--int8 builds from the int8 TensorRT graph: drop --fp16-graph"
                         + (f" and --fp16 (TensorRT {trt.__version__} builds strongly-typed networks, where the "
                            "layers outside Q/DQ pairs keep the graph's float32)" if strongly_typed else ""))
    use_fp16_graph = args.fp16_graph or (args.fp16 and strongly_typed)
    key = "int8_trt" if args.int8 else "fp16" if use_fp16_graph else "fp32"
    rel = exp["onnx"].get(key)
    if not rel or not (export_dir / rel).is_file():
        why = (f"TensorRT {trt.__version__} builds strongly-typed networks only, so --fp16 needs the fp16 "
               "ONNX graph: re-export with `tclr-zoo export ... --onnx --fp16`") if key == "fp16" else ""
        raise UsageError(f"{export_dir}: no {key} ONNX graph. {why}".strip())
    graph = export_dir / rel

    export_max = int(exp["max_batch"])
    max_batch = args.max_batch or export_max
    opt_batch = args.opt_batch or max_batch
    if not 1 <= opt_batch <= max_batch <= export_max:
        raise UsageError(f"need 1 <= --opt-batch ({opt_batch}) <= --max-batch ({max_batch}) <= the export's "
                         f"max_batch ({export_max})")
    inp = exp["input"]
    item = tuple(int(d) for d in inp["shape"][1:])

    logger = trt.Logger(trt.Logger.VERBOSE if args.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed or (use_fp16_graph and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
                          and major >= 10):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {graph}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace_gib * (1 << 30)))
    if args.fp16 and not strongly_typed and not use_fp16_graph:
        config.set_flag(trt.BuilderFlag.FP16)
    if args.int8 and not strongly_typed:  # explicit quantization: Q/DQ scales from the graph, no calibrator
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp["name"], (1, *item), (opt_batch, *item), (max_batch, *item))
    config.add_optimization_profile(profile)

    cache_path = Path(args.timing_cache) if args.timing_cache else None
    if cache_path is not None:
        cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {graph} (rerun with --verbose)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(plan))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    print(f"wrote {out} (TensorRT {trt.__version__}, {graph.name}, batch 1/{opt_batch}/{max_batch}"
          f"{', fp16' if args.fp16 else ''}{', int8 (explicit quantization)' if args.int8 else ''})")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export_dir", help="a `tclr-zoo export --onnx` folder")
    p.add_argument("--out", default="model.plan", help="engine file to write (default: model.plan)")
    p.add_argument("--fp16", action="store_true", help="fp16 engine (see above for TensorRT >= 11)")
    p.add_argument("--fp16-graph", action="store_true", help="parse onnx/model.fp16.onnx instead of model.onnx")
    p.add_argument("--int8", action="store_true",
                   help="int8 engine from onnx/model.int8.trt.onnx (explicit quantization, no calibrator)")
    p.add_argument("--opt-batch", type=int, help="batch size TensorRT tunes for (default: max batch)")
    p.add_argument("--max-batch", type=int, help="profile max batch (default and upper bound: the export's)")
    p.add_argument("--timing-cache", help="timing cache file: loaded if present, saved after the build")
    p.add_argument("--workspace-gib", type=float, default=4.0, help="builder workspace limit (GiB)")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        build(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
