"""Model cards, the facts: every number known for a model with its provenance (``Row``), and the
Hub metadata (YAML front matter with the ``model-index``) built from them; also the reader of an
existing card's front matter. :mod:`tclr_zoo.hub.card` turns these into the card's text.

The front matter is written with ``yaml.safe_dump`` rather than ``huggingface_hub.ModelCardData``:
``ModelCardData.to_yaml`` sorts the top-level keys (``datasets`` before ``library_name``, where the
card promises ``library_name`` first) and ``huggingface_hub``'s model-index builder groups results
by dataset *type*, which merges the results of two splits of one dataset into one entry. The
Hub's parser reads what is written here (``ModelCard(text).data.eval_results``, tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..constants import DATASET_NAMES, HF_PREFIX, LOCAL_PREFIX, POOLING_HEADS

MEASURED = "measured by this run"
CARRIED = "measured by this run (copied from the source card)"
PAPER = "paper (Dave et al., arXiv 2101.07974)"
CONVERTED = "converted-reference (conversion check)"
README_REF = "reference code README (DAVEISHAN/TCLR)"
# Keys of reference numbers a card quotes, by source: ``paper_<dataset>_<metric>``, ``repo_readme_...``.
PAPER_KEY, README_KEY = "paper_", "repo_readme_"

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
#: Datasets the Hub knows by id (``constants.DATASET_NAMES``) and their short aliases -> display names.
KNOWN_DATASETS = {**DATASET_NAMES, "k400": DATASET_NAMES["kinetics400"]}


@dataclass(frozen=True)
class Row:
    """One line of the results table; ``indexed`` rows (this run's numbers) also go to the model-index."""

    key: str
    value: float
    dataset: str
    provenance: str
    unit: str = ""  # "%": shown in percent (the value is a fraction of 1 like every other)
    indexed: bool = False
    protocol: str = ""  # how it was measured (clips, frames, stride, head, split); see protocol_text

    @property
    def label(self) -> str:
        return _metric_info(self.key)[0]


# ---- results and their provenance --------------------------------------------------------------

def collect_rows(config: dict[str, Any], results: dict[str, Any] | None, *, model_id: str | None = None,
                 conversion_check: dict[str, Any] | None = None) -> list[Row]:
    """All numbers known for the model, each with its provenance, without duplicates."""
    rows = _evaluation_rows(config)
    rows += _training_rows(config)
    rows += _result_rows(results or {}, _training_dataset(config))
    rows += _reference_rows(config)
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
    flat = {k: v for k, v in results.items() if is_number(v) and k not in NOT_METRICS}
    knn = results.get("knn") if isinstance(results.get("knn"), dict) else {}
    for key, value in knn.items():
        if key.startswith("R@") and is_number(value) and not (key == "R@1" and "knn_r1" in flat):
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
            if is_number(value):
                rows.append(Row(_normalise_key(key), float(value), dataset, MEASURED, indexed=True, protocol=how))
        for name, metrics in (record.get("baseline") or {}).items():
            for key, value in metrics.items():
                if is_number(value):
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
                f"{record_head(s)} head; cosine")
    crops = ", 3 crops" if s.get("crops") == 3 else ""
    return (f"{record.get('protocol')} protocol: trained on train split {split}, tested on test split {split}; "
            f"{clips}{crops}; softmax averaged over clips")


def record_head(settings: dict[str, Any]) -> str:
    """The head a retrieval record's numbers were measured on. Records written before the protocols
    took the SDK's head names say ``pooling`` (``temporal`` for the retrieval head) instead."""
    if settings.get("head"):
        return str(settings["head"])
    pooling = settings.get("pooling") or "temporal"
    return POOLING_HEADS.get(pooling, str(pooling))


def _training_rows(config: dict[str, Any]) -> list[Row]:
    """A classifier's own test accuracies, recorded in ``config["training"]`` by the eval protocols."""
    training = config.get("training") or {}
    if "protocol" not in training:
        return []
    dataset = str(training.get("dataset") or "unknown")
    return [Row(k, float(training[k]), dataset, MEASURED, indexed=True)
            for k in ("top1", "top5") if is_number(training.get(k))]


def _reference_rows(config: dict[str, Any]) -> list[Row]:
    """The published numbers the pretraining recorded with the weights (``training.reference``: its
    recipe's ``reference`` when training ended; for a classifier, its encoder's ``training.from``).
    Folders saved before these were recorded show none: the recipe is never loaded again, so a card
    cannot change with (or fail on) a recipe edited or gone since."""
    training = config.get("training") or {}
    pretraining = (training.get("from") or {}) if "protocol" in training else training
    rows = []
    for key, value in (pretraining.get("reference") or {}).items():
        if is_number(value) and key.startswith((PAPER_KEY, README_KEY)):
            paper = key.startswith(PAPER_KEY)
            dataset, metric = _split_dataset(key.removeprefix(PAPER_KEY if paper else README_KEY))
            rows.append(Row(metric, float(value), dataset, PAPER if paper else README_REF))
    return rows


def _pretrained_rows(config: dict[str, Any], model_id: str | None) -> list[Row]:
    """Paper numbers of the authors' released weights, for converted models named by ``model_id``
    (fractions, shown in %)."""
    spec = pretrained_spec(config, model_id)
    if spec is None:
        return []
    rows = []
    for key, value in spec.results.items():
        if is_number(value):
            dataset, metric = _split_dataset(key)
            rows.append(Row(metric, float(value), dataset, f"{PAPER}; weights converted, not re-measured", unit="%"))
    return rows


def _conversion_rows(check: dict[str, Any]) -> list[Row]:
    """The converter's comparison with the reference network (a fidelity check, not a quality metric)."""
    inputs = str(check.get("inputs") or "random clips")
    return [Row(f"max_abs_diff_{part}", float(check[part]), inputs, CONVERTED)
            for part in ("features", "embeddings") if is_number(check.get(part))]


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
            if key and is_number(metric.get("value")):
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


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _training_dataset(config: dict[str, Any]) -> str:
    return str((config.get("training") or {}).get("dataset") or "unknown")


def pretrained_spec(config: dict[str, Any], model_id: str | None):
    """The released-weights entry named by ``model_id`` (converted models only, so a user's own
    upload under a similar name never gets the paper's numbers)."""
    if not model_id:
        return None
    from ..models.pretrained import find_pretrained

    return find_pretrained(model_id, by_repo=bool(config.get("source")))


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
    spec = pretrained_spec(config, model_id)
    if spec is not None:
        names.insert(0, spec.dataset)
    ids = []
    for name in names:
        key = dataset_key(name)
        if key in KNOWN_DATASETS and key not in ids:
            ids.append(key)
    return ids


def dataset_key(name: Any) -> str:
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
    return [{"name": model_name(config, model_id), "results": results}]


def model_name(config: dict[str, Any], model_id: str | None) -> str:
    name = published_id(model_id)
    return name.removeprefix(HF_PREFIX).split("@", 1)[0].split("/")[-1] if name else f"tclr-{config['architecture']}"


# ---- names -----------------------------------------------------------------------------------

def usage_id(model_id: str | None) -> str | None:
    """The name ``load_model`` takes for ``model_id``: a Hub repo, a registry name, or a folder on disk
    (as a plain path, relative to the working directory when it lies below it)."""
    if not model_id or "(" in model_id:
        return None
    if model_id.startswith(LOCAL_PREFIX):
        return _display_path(model_id[len(LOCAL_PREFIX):])
    return model_id if model_id.startswith(HF_PREFIX) or "/" not in model_id else f"{HF_PREFIX}{model_id}"


def _display_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path


def published_id(model_id: str | None) -> str | None:
    """Hub repos and registry names: names that mean the same on every machine."""
    return None if not model_id or model_id.startswith(LOCAL_PREFIX) else usage_id(model_id)


__all__ = ["CARRIED", "CONVERTED", "KNOWN_DATASETS", "MEASURED", "METRICS", "PAPER", "README_REF", "Row",
           "card_results", "collect_rows", "dataset_key", "front_matter", "is_number", "model_index", "model_name",
           "parse_front_matter", "pretrained_spec", "protocol_text", "published_id", "record_head", "usage_id"]
