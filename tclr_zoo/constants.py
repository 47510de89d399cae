"""Names that several layers share, defined once and free of torch so any module (and ``--help``)
can import them cheaply: the heads a model exposes, the files of a saved model and of its export,
the prefixes of model names, and the dataset layouts the data loaders understand.
"""

from __future__ import annotations

#: Every output a TCLR model can give: the three embeddings and, with a classifier, the logits.
HEADS: tuple[str, ...] = ("backbone", "retrieval", "projection", "logits")
#: The embedding heads (what ``VideoModel.embed`` and a ``VideoIndex`` take; "retrieval" is the default).
EMBED_HEADS: tuple[str, ...] = HEADS[:3]
#: Heads whose rows are L2-normalised (cosine = dot product).
NORMALISED_HEADS: tuple[str, ...] = ("retrieval", "projection")
#: What the evaluation protocols called the heads before they took these names ("pooling" in older
#: recipes, ``--set`` values and evaluation records): old name -> head. Still read, with a note.
POOLING_HEADS: dict[str, str] = {"temporal": "retrieval", "pooled": "backbone", "projection": "projection"}

# A saved model folder (= Hub repository layout).
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
# Its exported graphs, in a subfolder.
ONNX_DIR = "onnx"
FP32_NAME = "model.onnx"
FP16_NAME = "model.fp16.onnx"
# INT8 (static QDQ, one calibration): onnxruntime's U8S8 graph and TensorRT's S8S8 graph.
INT8_NAME = "model.int8.onnx"
INT8_TRT_NAME = "model.int8.trt.onnx"
REPORT_NAME = "export_report.json"
#: The ``tclr-zoo export`` flags that write each graph (config.json "export.onnx" key -> flags), for the
#: messages that say how to get a graph an export lacks.
EXPORT_FLAGS: dict[str, str] = {"fp32": "--onnx", "fp16": "--onnx --fp16", "int8": "--int8 --calibrate SOURCE"}

#: The command line's flag for a randomly initialised network (the SDK's ``pretrained=False``), for
#: the messages that say how to get one.
RANDOM_INIT_FLAG = "--random-init"

#: Videos per unit of an ``embed`` / ``index build`` run under torchrun (``inference.shards``): one
#: file each, and what an interruption costs at most per process.
SHARD_VIDEOS = 256
#: The engines of a corpus job: this process (or each torchrun process), or a Ray cluster.
CORPUS_ENGINES = ("local", "ray")
#: Videos each decode task of the Ray engine decodes (``RayOptions.videos_per_task``, ``--ray-videos-per-task``).
RAY_VIDEOS_PER_TASK = 4

# Model names that are not registry names.
HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"

#: Architectures the TCLR authors released checkpoints for (what ``tclr-zoo convert`` reads).
REFERENCE_ARCHS: tuple[str, ...] = ("r3d_18", "r2plus1d_18")

#: Dataset layouts with an official split (folder name -> display name).
DATASET_NAMES: dict[str, str] = {"ucf101": "UCF101", "hmdb51": "HMDB51", "kinetics400": "Kinetics-400"}
#: Every ``--dataset`` layout: the official ones plus a plain class-per-folder tree and a CSV list.
DATASET_LAYOUTS: tuple[str, ...] = (*DATASET_NAMES, "folder", "csv")

__all__ = ["CARD_NAME", "CONFIG_NAME", "CORPUS_ENGINES", "RAY_VIDEOS_PER_TASK",
           "DATASET_LAYOUTS", "DATASET_NAMES", "EMBED_HEADS", "EXPORT_FLAGS", "FP16_NAME",
           "FP32_NAME", "HEADS", "HF_PREFIX", "INT8_NAME", "INT8_TRT_NAME", "LOCAL_PREFIX", "NORMALISED_HEADS",
           "ONNX_DIR", "POOLING_HEADS", "RANDOM_INIT_FLAG", "REFERENCE_ARCHS", "REPORT_NAME", "SHARD_VIDEOS",
           "WEIGHTS_NAME"]
