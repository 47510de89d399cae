"""Model cards: fill the ``MODEL_CARD.md`` template from a model's ``config.json`` and results.

The template (repo root ``MODEL_CARD.md``, shipped in the wheel as ``tclr_zoo/MODEL_CARD.md``) is a
:class:`string.Template`: each ``${name}`` is one block of markdown built here. Keeping the prose in
the template and the facts here means a card never states something the config does not record.

Numbers carry their provenance: "measured by this run" (the run that produced the weights, the only
ones that go into the Hub's ``model-index``), "paper" (Dave et al., for comparison) or
"converted-reference" (the conversion check of the authors' released weights).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..constants import LOCAL_PREFIX, ONNX_DIR, REPORT_NAME

TEMPLATE_NAME = "MODEL_CARD.md"
MEASURED = "measured by this run"
CARRIED = "measured by this run (copied from the source card)"
PAPER = "paper (Dave et al., arXiv 2101.07974)"
CONVERTED = "converted-reference (conversion check)"
README_REF = "reference code README (DAVEISHAN/TCLR)"

# results keys -> (label, Hub metric type, task); R@k keys are added by _metric_info.
METRICS: dict[str, tuple[str, str, str]] = {
    "knn_r1": ("kNN retrieval R@1", "knn_r1", "retrieval"),
    "knn_r1_random_init": ("kNN retrieval R@1, randomly initialised network (baseline)", "knn_r1", "retrieval"),
    "top1": ("top-1 accuracy", "accuracy", "classification"),
    "top5": ("top-5 accuracy", "top5_accuracy", "classification"),
    "clip_top1": ("clip-level top-1 accuracy", "clip_accuracy", "classification"),
}
# Hub task ids: retrieval numbers describe an embedding model, accuracies a classifier.
TASKS = {"retrieval": ("feature-extraction", "kNN video retrieval (test split queries the train split)"),
         "classification": ("video-classification", "Video classification")}
# results keys that are bookkeeping, not quality metrics.
NOT_METRICS = {"epochs", "wall_seconds", "clips_per_second", "bad_files", "peak_gpu_memory_gb", "classes",
               "missing_files", "queries", "gallery", "world_size", "steps", "videos", "seconds", "split"}
KNOWN_DATASETS = {"ucf101": "UCF101", "hmdb51": "HMDB51", "kinetics400": "Kinetics-400", "k400": "Kinetics-400"}


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``indexed`` rows (this run's numbers) also go to the model-index."""

    key: str
    value: float
    dataset: str
    provenance: str
    unit: str = ""
    indexed: bool = False
    protocol: str = ""  # how it was measured (clips, frames, stride, pooling, split); see protocol_text

    @property
    def label(self) -> str:
        return _metric_info(self.key)[0]


# ---- entry points ----------------------------------------------------------------------------

def render_model_card(config: dict[str, Any], results: dict[str, Any] | None = None, *,
                      model_id: str | None = None, folder: str | Path | None = None,
                      export_report: dict[str, Any] | None = None,
                      conversion_check: dict[str, Any] | None = None) -> str:
    """The card (README.md with Hub front matter) of the model described by ``config``.

    ``results``: numbers of the run that produced the weights (e.g. ``knn_r1``, ``dataset``); a
    ``provenance`` key marks them as someone else's (then they stay out of the model-index).
    ``model_id``: the Hub/registry name, for the usage snippet and the paper's numbers of released
    weights. ``folder``: the saved folder the model came from; a re-saved or pushed model keeps the
    measured numbers of its old card and the parity numbers of its ``onnx/export_report.json``,
    which ``config.json`` does not hold. ``export_report``: that report given directly.
    ``conversion_check``: the converter's max abs differences to the reference network.
    """
    if folder is not None:
        results = results or card_results(Path(folder) / "README.md") or None
        export_report = export_report or _folder_report(config, Path(folder))
    rows = collect_rows(config, results, model_id=model_id, conversion_check=conversion_check)
    values = {
        "front_matter": front_matter(config, rows, model_id=model_id),
        "title": _title(config, model_id), "summary": _summary(config),
        "architecture": architecture_section(config),
        "pretraining": pretraining_section(config, model_id, conversion_check),
        "preprocessing": preprocessing_section(config), "usage": usage_snippet(config, model_id),
        "evaluation": evaluation_section(config), "results": results_table(rows),
        "export": export_section(config, export_report), "limitations": _limitations(config, rows, model_id),
    }
    return string.Template(_strip_comment(load_template())).substitute(values)


def _folder_report(config: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """``onnx/export_report.json`` of an exported folder (None when absent or unreadable)."""
    path = folder / ONNX_DIR / REPORT_NAME
    if not (config.get("export") or {}).get("onnx") or not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


@lru_cache(maxsize=1)
def load_template() -> str:
    """The template text, found as package data so it works from a wheel as well as a checkout."""
    return resources.files("tclr_zoo").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")


def _strip_comment(text: str) -> str:
    """Drop the leading ``<!-- ... -->`` note: the Hub needs the front matter first."""
    if text.startswith("<!--"):
        text = text[text.index("-->") + 3:].lstrip("\n")
    return text


# ---- results and their provenance --------------------------------------------------------------

def collect_rows(config: dict[str, Any], results: dict[str, Any] | None, *, model_id: str | None = None,
                 conversion_check: dict[str, Any] | None = None) -> list[Row]:
    """All numbers known for the model, each with its provenance, without duplicates."""
    rows = _evaluation_rows(config)
    rows += _training_rows(config)
    rows += _result_rows(results or {}, _training_dataset(config))
    rows += _recipe_reference_rows(config)
    rows += _pretrained_rows(config, model_id)
    if conversion_check:
        rows += _conversion_rows(conversion_check)
    seen, unique = set(), []
    for row in rows:  # one measured value per metric and dataset; quoted ones per source
        ident = (row.key, row.dataset, True if row.indexed else row.provenance)
        if ident not in seen:
            seen.add(ident)
            unique.append(row)
    return unique


def _result_rows(results: dict[str, Any], default_dataset: str) -> list[Row]:
    """Rows from a results dict; nested ``knn`` dicts add R@k, ``*_random_init`` rows stay out of the index."""
    provenance = results.get("provenance") or MEASURED
    measured = str(provenance).startswith("measured")
    dataset = str(results.get("dataset") or default_dataset)
    flat = {k: v for k, v in results.items() if _is_number(v) and k not in NOT_METRICS}
    knn = results.get("knn") if isinstance(results.get("knn"), dict) else {}
    for key, value in knn.items():
        if key.startswith("R@") and _is_number(value) and not (key == "R@1" and "knn_r1" in flat):
            flat.setdefault(_retrieval_key(key), value)
    return [Row(_normalise_key(k), float(v), dataset, str(provenance),
                indexed=measured and "random_init" not in k) for k, v in flat.items()]


def _evaluation_rows(config: dict[str, Any]) -> list[Row]:
    """This run's numbers, from the evaluation records ``config.json`` keeps (``evaluation``): each
    with the protocol settings it was measured with; random-init baselines stay out of the index."""
    rows = []
    for record in config.get("evaluation") or []:
        how, dataset = protocol_text(record), str(record.get("dataset") or "unknown")
        for key, value in (record.get("metrics") or {}).items():
            if _is_number(value):
                rows.append(Row(_normalise_key(key), float(value), dataset, MEASURED, indexed=True, protocol=how))
        for name, metrics in (record.get("baseline") or {}).items():
            for key, value in metrics.items():
                if _is_number(value):
                    rows.append(Row(f"{_normalise_key(key)}_{name}", float(value), dataset, MEASURED, protocol=how))
    return rows


def protocol_text(record: dict[str, Any]) -> str:
    """One line saying how an evaluation record's numbers were measured (card, info, eval's table)."""
    s = record.get("settings") or {}
    clips = (f"{s.get('clips', '?')} clips x {s.get('frames', '?')} frames at stride {s.get('stride', '?')}, "
             f"{s.get('size', '?')} px, centre crop {s.get('crop_fraction', '?')}")
    split = record.get("split", "?")
    if record.get("protocol") == "retrieval":
        return (f"kNN retrieval: test split {split} queries train split {split}; {clips}; "
                f"{s.get('pooling', 'temporal')} pooling; cosine")
    crops = ", 3 crops" if s.get("crops") == 3 else ""
    return (f"{record.get('protocol')} protocol: trained on train split {split}, tested on test split {split}; "
            f"{clips}{crops}; softmax averaged over clips")


def _training_rows(config: dict[str, Any]) -> list[Row]:
    """A classifier's own test accuracies, recorded in ``config["training"]`` by the eval protocols."""
    training = config.get("training") or {}
    if "protocol" not in training:
        return []
    dataset = str(training.get("dataset") or "unknown")
    return [Row(k, float(training[k]), dataset, MEASURED, indexed=True)
            for k in ("top1", "top5") if _is_number(training.get(k))]


def _recipe_reference_rows(config: dict[str, Any]) -> list[Row]:
    """The paper's numbers kept in the bundled recipe that pretrained the model (its ``reference``)."""
    training = config.get("training") or {}
    name = training.get("recipe") or (training.get("from") or {}).get("recipe")
    if not name:
        return []
    try:
        from ..train.config import load_recipe

        reference = load_recipe(name).reference or {}
    except Exception:  # a custom recipe file that is gone: no reference numbers, not an error
        return []
    rows = []
    for key, value in reference.items():
        if _is_number(value) and key.startswith(("paper_", "repo_readme_")):
            paper = key.startswith("paper_")
            dataset, metric = _split_dataset(key.split("_", 2 if not paper else 1)[-1])
            rows.append(Row(metric, float(value), dataset, PAPER if paper else README_REF))
    return rows


def _pretrained_rows(config: dict[str, Any], model_id: str | None) -> list[Row]:
    """Paper numbers of the authors' released weights, for converted models named by ``model_id``."""
    spec = _pretrained_spec(config, model_id)
    if spec is None:
        return []
    rows = []
    for key, value in spec.results.items():
        if _is_number(value):
            dataset, metric = _split_dataset(key)
            rows.append(Row(metric, float(value), dataset, f"{PAPER}; weights converted, not re-measured", unit="%"))
    return rows


def _conversion_rows(check: dict[str, Any]) -> list[Row]:
    """The converter's comparison with the reference network (a fidelity check, not a quality metric)."""
    inputs = str(check.get("inputs") or "random clips")
    return [Row(f"max_abs_diff_{part}", float(check[part]), inputs, CONVERTED)
            for part in ("features", "embeddings") if _is_number(check.get(part))]


def card_results(path: str | Path) -> dict[str, Any]:
    """Measured numbers of an existing card, read back from its model-index (empty if none)."""
    path = Path(path)
    if not path.is_file():
        return {}
    meta = parse_front_matter(path.read_text(encoding="utf-8"))
    types = {hub_type: key for key, (_, hub_type, _) in METRICS.items() if "random_init" not in key}
    results: dict[str, Any] = {}
    for entry in (meta.get("model-index") or [{}])[0].get("results") or []:
        results.setdefault("dataset", (entry.get("dataset") or {}).get("name"))
        for metric in entry.get("metrics") or []:
            key = types.get(metric.get("type"), metric.get("type"))
            if key and _is_number(metric.get("value")):
                results[key] = metric["value"]
    if results:
        results["provenance"] = CARRIED
    return {k: v for k, v in results.items() if v is not None}


def parse_front_matter(text: str) -> dict[str, Any]:
    """The YAML between the leading ``---`` lines of a card (empty dict when there is none)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 4)
    meta = yaml.safe_load(text[4:end + 1]) if end > 0 else None
    return meta if isinstance(meta, dict) else {}


def _metric_info(key: str) -> tuple[str, str, str]:
    """(label, Hub metric type, task) of a results key, with readable fallbacks for unknown keys."""
    if key in METRICS:
        return METRICS[key]
    if key.startswith("knn_r") and key[5:].isdigit():
        return f"kNN retrieval R@{key[5:]}", key, "retrieval"
    if key.startswith("max_abs_diff_"):
        return f"max abs difference to the reference network ({key[13:]})", key, "conversion"
    words = {"finetune": "fine-tuned", "linear": "linear-probe", "nn": "kNN retrieval", "knn": "kNN retrieval",
             "top1": "top-1 accuracy", "top5": "top-5 accuracy", "r1": "R@1"}
    label = " ".join(words.get(w, w) for w in key.split("_"))
    task = "retrieval" if any(w in key for w in ("knn", "nn_r", "R@")) else "classification"
    return label, key, task


def _normalise_key(key: str) -> str:
    return _retrieval_key(key) if key.startswith("R@") else key


def _retrieval_key(key: str) -> str:
    """``R@5`` (protocol results) -> ``knn_r5`` (the name used in results.json and the model-index)."""
    return f"knn_r{key[2:]}"


def _split_dataset(key: str) -> tuple[str, str]:
    """``ucf101_finetune_top1`` -> (``UCF101``, ``finetune_top1``)."""
    head, _, rest = key.partition("_")
    return (KNOWN_DATASETS[head], rest) if head in KNOWN_DATASETS and rest else ("see metric", key)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _training_dataset(config: dict[str, Any]) -> str:
    return str((config.get("training") or {}).get("dataset") or "unknown")


def _pretrained_spec(config: dict[str, Any], model_id: str | None):
    """The released-weights entry named by ``model_id`` (converted models only, so a user's own
    upload under a similar name never gets the paper's numbers)."""
    if not model_id:
        return None
    from ..models.pretrained import _PRETRAINED

    name = model_id.removeprefix("hf-hub:").split("@", 1)[0]
    for spec in _PRETRAINED.values():
        if name == spec.name or (config.get("source") and name.split("/")[-1] == spec.repo):
            return spec
    return None


# ---- front matter ----------------------------------------------------------------------------

def front_matter(config: dict[str, Any], rows: list[Row], *, model_id: str | None = None) -> str:
    """Hub metadata as YAML (``yaml.safe_dump``, so any value parses back)."""
    meta: dict[str, Any] = {"library_name": "tclr_zoo"}
    if config.get("license"):
        meta["license"] = config["license"]
    meta["tags"] = _tags(config)
    datasets = _dataset_ids(config, model_id)
    if datasets:
        meta["datasets"] = datasets
    meta["pipeline_tag"] = "video-classification" if config.get("labels") else "feature-extraction"
    index = model_index(config, rows, model_id)
    if index:
        meta["model-index"] = index
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)


def _tags(config: dict[str, Any]) -> list[str]:
    tags = ["video", "self-supervised", "contrastive-learning", "tclr", config["architecture"]]
    if config.get("labels"):
        tags.append("video-classification")
    if (config.get("export") or {}).get("onnx"):
        tags.append("onnx")
    return tags


def _dataset_ids(config: dict[str, Any], model_id: str | None) -> list[str]:
    """Known real datasets the weights saw (pretraining, then fine-tuning); never the synthetic demo."""
    training = config.get("training") or {}
    names = [(training.get("from") or {}).get("dataset"), training.get("dataset")]
    spec = _pretrained_spec(config, model_id)
    if spec is not None:
        names.insert(0, spec.dataset)
    ids = []
    for name in names:
        key = _dataset_key(name)
        if key in KNOWN_DATASETS and key not in ids:
            ids.append(key)
    return ids


def _dataset_key(name: Any) -> str:
    """``"ucf101/split1"``, ``"UCF101"``, ``"Kinetics-400 (train)"`` -> ``ucf101``, ``kinetics400``."""
    key = str(name or "").split("/")[0].split(" ")[0].lower().replace("-", "")
    return "kinetics400" if key == "k400" else key


def model_index(config: dict[str, Any], rows: list[Row], model_id: str | None) -> list[dict[str, Any]]:
    """The Hub's model-index from this run's numbers only (paper numbers would look like ours there)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row.indexed:
            groups.setdefault((_metric_info(row.key)[2], row.dataset), []).append(row)
    results = []
    for (task, dataset), group in groups.items():
        task_type, task_name = TASKS.get(task, (task, task))
        results.append({
            "task": {"type": task_type, "name": task_name},
            "dataset": {"name": dataset, "type": dataset.split("/")[0].lower()},
            "metrics": [{"type": _metric_info(r.key)[1], "value": round(r.value, 6), "name": r.label} for r in group],
        })
    if not results:
        return []
    return [{"name": _model_name(config, model_id), "results": results}]


def _model_name(config: dict[str, Any], model_id: str | None) -> str:
    name = _published_id(model_id)
    return name.removeprefix("hf-hub:").split("@", 1)[0].split("/")[-1] if name else f"tclr-{config['architecture']}"


# ---- body sections ---------------------------------------------------------------------------

def _title(config: dict[str, Any], model_id: str | None) -> str:
    kind = "video classifier" if config.get("labels") else "video encoder"
    name = _published_id(model_id)
    return f"{_model_name(config, model_id)}: TCLR {kind} ({config['architecture']})" if name else \
        f"TCLR {kind}: {config['architecture']}"


def _summary(config: dict[str, Any]) -> str:
    what = (f"a video classifier with {len(config['labels'])} classes built on a TCLR-pretrained encoder"
            if config.get("labels") else "a self-supervised video encoder pretrained with TCLR")
    return (f"This is {what}: `{config['architecture']}`, saved by tclr_zoo "
            f"{config.get('library_version', 'unknown')} (`config.json` + `model.safetensors`). "
            "It turns short video clips into embeddings for retrieval, clustering and as initialisation "
            "for action recognition.")


def architecture_section(config: dict[str, Any]) -> str:
    """Architecture, TCLR's layer4 change and the size of each embedding the model offers."""
    arch, args = config["architecture"], config.get("model_args") or {}
    lines = [f"- **Architecture**: `{arch}`{_arch_description(arch)}; arguments `{json.dumps(args)}`."]
    frames = int(config["preprocessing"]["frames"])
    dims = config.get("embedding_dims") or {}
    steps = dims["retrieval"] // dims["backbone"] if dims.get("backbone") and dims.get("retrieval") else None
    if args.get("kind") in ("r3d", "r2plus1d"):
        lines.append("- **TCLR's layer4**: the first block of layer4 uses temporal stride 1 with dilation 2 "
                     "instead of stride 2, so the last feature map keeps more time-steps"
                     f"{f' ({steps} for a {frames}-frame clip)' if steps else ''}. The change adds no "
                     "parameters: the weights load into a plain torchvision network without error but "
                     "compute something else there. Load them with tclr_zoo.")
    elif steps:
        lines.append(f"- **Temporal map**: the last feature map keeps {steps} time-steps for a {frames}-frame clip.")
    lines += _embedding_lines(config, dims, steps)
    return "\n".join(lines)


def _arch_description(arch: str) -> str:
    try:
        from ..models.registry import get_arch

        description = get_arch(arch).description
    except Exception:  # an architecture this version does not register: the card still renders
        return ""
    return f": {description}" if description else ""


def _embedding_lines(config: dict[str, Any], dims: dict[str, Any], steps: int | None) -> list[str]:
    lines = ["- **Embeddings** (`model.embed(..., head=...)`):"]
    if dims.get("retrieval"):
        lines.append(f"  - `retrieval`: {dims['retrieval']} values, TCLR's temporal feature "
                     f"({steps} time-steps x {dims.get('backbone')} channels, L2-normalised); used by the "
                     "kNN protocol.")
    if dims.get("backbone"):
        lines.append(f"  - `backbone`: {dims['backbone']} values, the spatio-temporally pooled features.")
    projection = dims.get("projection") or config.get("head_dim")
    if projection:
        lines.append(f"  - `projection`: {projection} values, the contrastive head's output (L2-normalised).")
    labels = config.get("labels")
    if labels:
        shown = ", ".join(f"`{label}`" for label in labels[:8]) + (", ..." if len(labels) > 8 else "")
        lines.append(f"- **Classifier**: {len(labels)} labels (`logits` head; index = label): {shown}.")
    return lines


def pretraining_section(config: dict[str, Any], model_id: str | None = None,
                        conversion_check: dict[str, Any] | None = None) -> str:
    """Where the weights come from: a tclr-zoo recipe run, a fine-tuning run, or a converted release."""
    if config.get("source"):
        return _source_text(config, model_id, conversion_check)
    training = config.get("training") or {}
    if "protocol" in training:
        base = _recipe_text(training.get("from") or {})
        return (f"{base}\n\nThen trained with labels: **{training['protocol']}** protocol on "
                f"`{training.get('dataset', 'unknown')}` ({len(config.get('labels') or [])} classes).")
    return _recipe_text(training)


def _recipe_text(training: dict[str, Any]) -> str:
    if not training.get("recipe"):
        return "Not recorded: `config.json` has no training section (the weights' origin is unknown)."
    return (f"Pretrained with TCLR by the tclr-zoo recipe `{training['recipe']}` on "
            f"`{training.get('dataset', 'unknown')}` for {training.get('epochs', '?')} epochs, without labels "
            "(the class labels of the dataset are used only by the evaluation below).")


def _source_text(config: dict[str, Any], model_id: str | None, check: dict[str, Any] | None) -> str:
    src = config["source"]
    spec = _pretrained_spec(config, model_id)
    data = f" Pretraining data: {spec.dataset}." if spec is not None else ""
    text = (f"Converted by `tclr_zoo.convert` from the TCLR authors' reference checkpoint `{src.get('file')}` "
            f"(sha256 `{src.get('sha256')}`, epoch {src.get('epoch')}, key `{src.get('state_dict_key')}`, "
            f"format `{src.get('format')}`), trained with the reference code (DAVEISHAN/TCLR).{data}")
    if check and _is_number(check.get("max")):
        tolerance = f" (tolerance {check['tolerance']:g})" if _is_number(check.get("tolerance")) else ""
        text += (f"\n\nConversion check: max abs difference to the reference network {check['max']:.2e} "
                 f"on {check.get('inputs', 'random clips')}{tolerance}.")
    return text


def preprocessing_section(config: dict[str, Any]) -> str:
    """The exact input recipe, with a loud warning when the model wants BGR frames."""
    pre = config["preprocessing"]
    order = str(pre.get("channel_order", "rgb")).lower()
    mean, std = pre.get("mean"), pre.get("std")
    lines = [_bgr_warning()] if order == "bgr" else []
    lines += [
        f"- channel order: **{order.upper()}**",
        f"- pixel values: uint8 scaled to {pre.get('value_range', [0.0, 1.0])}",
        f"- mean / std: {'none (no normalisation)' if mean is None and std is None else f'{mean} / {std}'}",
        f"- clip: {pre['frames']} frames, frame stride {pre.get('eval_frame_stride', '?')} at inference "
        f"(pretraining sampled with stride {pre.get('pretrain_frame_stride', '?')})",
        f"- spatial: centre crop of {pre.get('crop_fraction', 1.0)} of the short side, resized to "
        f"{pre['size']}x{pre['size']}",
        f"- network input: float32 `[batch, 3, {pre['frames']}, {pre['size']}, {pre['size']}]` "
        "(channels, time, height, width)",
        "",
        "These values are stored in `config.json` under `preprocessing`; `load_model` applies them.",
    ]
    return "\n".join(lines)


def _bgr_warning() -> str:
    return ("> **Warning: this model expects BGR frames, not RGB.** It was trained on frames in OpenCV's "
            "BGR order, as TCLR's reference code reads them. `load_model(...).embed()` / `.classify()` on "
            "video files or on RGB uint8 frames convert for you. If you feed the network yourself "
            "(`model.preprocess`, the ONNX graph, Triton, your own pipeline), flip RGB frames to BGR "
            "first (`frames[..., ::-1]`): RGB input gives worse embeddings without any error.\n")


def usage_snippet(config: dict[str, Any], model_id: str | None) -> str:
    """A ``load_model`` example with the name that loads this model: its Hub repo or registry name,
    the folder it was saved to, or -- when neither is known -- a placeholder that says so."""
    name = _usage_id(model_id)
    where = ""
    if name is None:
        name = "path/to/this/folder"
        where = '  # the folder holding this card; "hf-hub:ORG/REPO" once pushed (tclr-zoo push)'
    elif model_id and model_id.startswith(LOCAL_PREFIX):
        where = '  # this folder; "hf-hub:ORG/REPO" once pushed (tclr-zoo push)'
    lines = ["from tclr_zoo import load_model", "", f'model = load_model("{name}"){where}',
             'embeddings = model.embed(["video1.mp4", "video2.mp4"])  # retrieval embeddings, one row per video']
    if config.get("labels"):
        lines.append('top5 = model.classify("video1.mp4", top_k=5)  # [(label, probability), ...]')
    if (config.get("export") or {}).get("onnx"):
        lines.append(f'onnx_model = load_model("{name}", backend="onnx")  # the exported graph in onnxruntime')
    return "\n".join(lines)


def _usage_id(model_id: str | None) -> str | None:
    """The name ``load_model`` takes for ``model_id``: a Hub repo, a registry name, or a folder on disk
    (as a plain path, relative to the working directory when it lies below it)."""
    if not model_id or "(" in model_id:
        return None
    if model_id.startswith(LOCAL_PREFIX):
        return _display_path(model_id[len(LOCAL_PREFIX):])
    return model_id if model_id.startswith("hf-hub:") or "/" not in model_id else f"hf-hub:{model_id}"


def _display_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path


def _published_id(model_id: str | None) -> str | None:
    """Hub repos and registry names: names that mean the same on every machine."""
    return None if not model_id or model_id.startswith(LOCAL_PREFIX) else _usage_id(model_id)


def evaluation_section(config: dict[str, Any]) -> str:
    """How the numbers below were measured (from ``preprocessing.eval_protocol`` and ``training``)."""
    pre = config["preprocessing"]
    proto = pre.get("eval_protocol") or {}
    lines = [f"- **kNN retrieval** (the TCLR paper's nearest-neighbour protocol): each video is embedded as the "
             f"{proto.get('pooling', 'temporal')} feature averaged over {proto.get('clips', '?')} clips of "
             f"{pre['frames']} frames (stride {pre.get('eval_frame_stride', '?')}) spread over the video; each "
             f"test video queries the training videos by {proto.get('similarity', 'cosine')} similarity, and "
             "R@k is the fraction of test videos with a same-class video among their k nearest neighbours. "
             "No labels are used to compute the embeddings."]
    training = config.get("training") or {}
    if "protocol" in training:
        how = {"linear": "a linear classifier trained on the frozen encoder's features",
               "finetune": "the whole network fine-tuned with a linear classifier"}.get(training["protocol"],
                                                                                      training["protocol"])
        lines.append(f"- **Classification** (`{training['protocol']}` protocol): {how} on "
                     f"`{training.get('dataset', 'unknown')}`; top-1 / top-5 accuracy of the prediction averaged "
                     "over several clips per test video.")
    return "\n".join(lines)


def results_table(rows: list[Row]) -> str:
    """The results table; the provenance column keeps measured and quoted numbers apart."""
    if not rows:
        return ("No numbers were measured for these weights, and none are quoted. Run "
                "`tclr-zoo eval --protocol retrieval` on them to measure some.")
    lines = ["| Metric | Dataset | Value | Provenance | Protocol |", "|---|---|---|---|---|"]
    lines += [f"| {r.label} | {r.dataset} | {_format_value(r)} | {r.provenance} | {r.protocol or _quoted_protocol(r)} |"
              for r in rows]
    lines += ["", "Values are fractions of 1 unless marked %. Only the numbers measured by this run are in the "
              "card's `model-index` metadata; paper numbers are quoted for comparison and were obtained with "
              "the authors' code, data and hardware."]
    return "\n".join(lines)


def _quoted_protocol(row: Row) -> str:
    """The protocol column of a number this run did not measure."""
    if row.provenance == MEASURED or row.provenance == CARRIED:
        return "not recorded"
    if row.provenance == CONVERTED:
        return "same random clips through both networks"
    return "the authors' (see their paper / code)"


def _format_value(row: Row) -> str:
    if row.key.startswith("max_abs_diff"):
        return f"{row.value:.2e}"
    return f"{row.value:g} %" if row.unit == "%" else f"{row.value:.4f}"


def export_section(config: dict[str, Any], report: dict[str, Any] | None = None) -> str:
    """What ``tclr-zoo export`` produced (config ``export``), with the parity numbers when known."""
    export = config.get("export")
    if not export:
        return ("Not exported: this folder holds the PyTorch weights only. `tclr-zoo export` adds ONNX graphs "
                "checked against PyTorch (head, opset, parity report).")
    inp, out = export.get("input") or {}, export.get("output") or {}
    lines = [f"- head: `{export.get('head')}`; input `{inp.get('name')}` {inp.get('dtype')} {inp.get('shape')}, "
             f"output `{out.get('name')}` {out.get('dtype')} {out.get('shape')}; max batch {export.get('max_batch')}"]
    onnx = export.get("onnx")
    if not onnx:
        lines.append("- ONNX: not exported (weights and config only)")
        return "\n".join(lines)
    lines.append(f"- ONNX opset {export.get('opset')} ({export.get('exporter')} exporter); files: "
                 + ", ".join(f"`{path}` ({kind})" for kind, path in onnx.items()))
    lines += _parity_lines(report, onnx.get("report"))
    return "\n".join(lines)


def _parity_lines(report: dict[str, Any] | None, report_path: str | None) -> list[str]:
    """Worst case over the checked batch sizes, per graph, as measured at export time."""
    if not report or not report.get("parity"):
        return [f"- parity with PyTorch: checked at export, see `{report_path or 'onnx/export_report.json'}`"]
    lines = [f"- parity with PyTorch ({report.get('parity_inputs', 'inputs')}, batch sizes "
             f"{report.get('parity_batch_sizes')}):"]
    for name, result in report["parity"].items():
        batches = result.get("batches") or []
        worst = max((b.get("max_abs_error", 0.0) for b in batches), default=float("nan"))
        cosine = min((b.get("min_cosine", 1.0) for b in batches), default=float("nan"))
        lines.append(f"  - `{name}` ({result.get('precision')}, {result.get('provider')}): max abs error "
                     f"{worst:.2e}, min cosine {cosine:.7g}")
    return lines


def _data_bias(config: dict[str, Any], model_id: str | None) -> str:
    """What the training videos were, and so which biases the weights carry -- from the record."""
    training = config.get("training") or {}
    names = [str(n) for n in ((training.get("from") or {}).get("dataset"), training.get("dataset")) if n]
    spec = _pretrained_spec(config, model_id)
    if spec is not None:
        names.insert(0, spec.dataset)
    if names and all("synthetic" in n for n in names):
        return ("- **Demo model**: trained on tclr-zoo's generated videos of moving shapes only, so it has seen no "
                "people, scenes or camera motion: it checks the pipeline and is not useful for real video.")
    if not names:
        return ("- Its training videos are not recorded, so their biases are unknown. Check its behaviour on your "
                "own footage before relying on it.")
    real = list(dict.fromkeys(KNOWN_DATASETS.get(_dataset_key(n), n) for n in names if "synthetic" not in n))
    what = (" (sports and everyday actions, mostly people, filmed by amateurs or taken from YouTube)"
            if set(real) & set(KNOWN_DATASETS.values()) else "")
    return (f"- The weights were trained on {' and then '.join(real)} and inherit the biases of those videos{what}. "
            "Check their behaviour on your own footage before relying on them.")


def _limitations(config: dict[str, Any], rows: list[Row], model_id: str | None = None) -> str:
    """Model-specific limits added after the template's general ones (each a bullet, or nothing)."""
    notes = [_data_bias(config, model_id)]
    if config.get("source"):
        notes.append("- Converted weights: the paper's numbers describe the authors' release and were not "
                     "re-measured by tclr-zoo on this copy.")
    if not any(r.indexed for r in rows):
        notes.append("- No evaluation numbers were measured for these weights (the model-index is empty).")
    if config.get("labels"):
        notes.append(f"- The classifier only knows its {len(config['labels'])} labels; any other action is "
                     "forced onto one of them.")
    return "".join(note + "\n" for note in notes)
