"""Model cards: fill the ``MODEL_CARD.md`` template from a model's ``config.json`` and results.

The template (repo root ``MODEL_CARD.md``, shipped in the wheel as ``tclr_zoo/MODEL_CARD.md``) is a
:class:`string.Template`: each ``${name}`` is one block of markdown built here. Keeping the prose in
the template and the facts here means a card never states something the config does not record.

Numbers carry their provenance: "measured by this run" (the run that produced the weights, the only
ones that go into the Hub's ``model-index``), "paper" (Dave et al., for comparison) or
"converted-reference" (the conversion check of the authors' released weights). The rows and the
YAML front matter are built in :mod:`tclr_zoo.hub.card_metadata`; this module writes the text.
"""

from __future__ import annotations

import json
import string
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..constants import LOCAL_PREFIX, ONNX_DIR, REPORT_NAME
from ..models.preprocessing import Preprocessing
from .card_metadata import (
    CARRIED,
    CONVERTED,
    KNOWN_DATASETS,
    MEASURED,
    Row,
    card_results,
    collect_rows,
    dataset_key,
    front_matter,
    is_number,
    model_name,
    parse_front_matter,
    pretrained_spec,
    protocol_text,
    published_id,
    usage_id,
)

TEMPLATE_NAME = "MODEL_CARD.md"


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
    values = dict(  # the template's ${...} names
        front_matter=front_matter(config, rows, model_id=model_id),
        title=_title(config, model_id), summary=_summary(config),
        architecture=architecture_section(config),
        pretraining=pretraining_section(config, model_id, conversion_check),
        preprocessing=preprocessing_section(config), usage=usage_snippet(config, model_id),
        evaluation=evaluation_section(config), results=results_table(rows),
        export=export_section(config, export_report), limitations=_limitations(config, rows, model_id),
    )
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


# ---- body sections ---------------------------------------------------------------------------


def _title(config: dict[str, Any], model_id: str | None) -> str:
    kind = "video classifier" if config.get("labels") else "video encoder"
    name = published_id(model_id)
    return f"{model_name(config, model_id)}: TCLR {kind} ({config['architecture']})" if name else \
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
    frames = Preprocessing.from_config(config).frames
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
    spec = pretrained_spec(config, model_id)
    data = f" Pretraining data: {spec.dataset}." if spec is not None else ""
    text = (f"Converted by `tclr-zoo convert` from the TCLR authors' reference checkpoint `{src.get('file')}` "
            f"(sha256 `{src.get('sha256')}`, epoch {src.get('epoch')}, key `{src.get('state_dict_key')}`, "
            f"format `{src.get('format')}`), trained with the reference code (DAVEISHAN/TCLR).{data}")
    if check and is_number(check.get("max")):
        tolerance = f" (tolerance {check['tolerance']:g})" if is_number(check.get("tolerance")) else ""
        text += (f"\n\nConversion check: max abs difference to the reference network {check['max']:.2e} "
                 f"on {check.get('inputs', 'random clips')}{tolerance}.")
    return text


def preprocessing_section(config: dict[str, Any]) -> str:
    """The exact input recipe, with a loud warning when the model wants BGR frames."""
    pre = Preprocessing.from_config(config)
    mean_std = "none (no normalisation)" if pre.mean is None else f"{list(pre.mean)} / {list(pre.std)}"
    lines = [_bgr_warning()] if pre.channel_order == "bgr" else []
    lines += [
        f"- channel order: **{pre.channel_order.upper()}**",
        f"- pixel values: uint8 scaled to {list(pre.value_range)}",
        f"- mean / std: {mean_std}",
        f"- clip: {pre.frames} frames, frame stride {pre.eval_frame_stride} at inference "
        f"(pretraining sampled with stride {pre.pretrain_frame_stride})",
        f"- spatial: centre crop of {pre.crop_fraction} of the short side, resized to {pre.size}x{pre.size}",
        f"- network input: float32 `[batch, 3, {pre.frames}, {pre.size}, {pre.size}]` "
        "(channels, time, height, width)",
        "",
        "These values are stored in `config.json` under `preprocessing`; `load_model` applies them, and "
        "`load_model(...).transform` is the same clip transform for your own data loaders.",
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
    name = usage_id(model_id)
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


def evaluation_section(config: dict[str, Any]) -> str:
    """How the numbers below were measured (from ``preprocessing.eval_protocol`` and ``training``)."""
    pre = Preprocessing.from_config(config)
    proto = pre.eval_protocol
    lines = [f"- **kNN retrieval** (the TCLR paper's nearest-neighbour protocol): each video is embedded as the "
             f"output of its `{proto.head}` head averaged over {proto.clips} clips of "
             f"{pre.frames} frames (stride {pre.eval_frame_stride}) spread over the video; each "
             f"test video queries the training videos by {proto.similarity} similarity, and "
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
    return f"{row.value * 100:g} %" if row.unit == "%" else f"{row.value:.4f}"


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
    lines += _int8_lines(report)
    return "\n".join(lines)


def _int8_lines(report: dict[str, Any] | None) -> list[str]:
    """The int8 graphs' calibration and accuracy gate, as measured at export time (held-out clips)."""
    int8 = (report or {}).get("int8")
    if not int8:
        return []
    gate, calibration = int8.get("gate") or {}, int8.get("calibration") or {}
    held, bounds = gate.get("held_out") or {}, gate.get("bounds") or {}
    lines = [f"- int8 (static QDQ, {int8.get('method')} calibration on {calibration.get('clips')} clips of "
             f"{calibration.get('videos')} videos): against the fp32 graph on {held.get('clips')} held-out clips of "
             f"{held.get('videos')} videos (gate: cosine mean >= {bounds.get('cosine_mean')}, agreement >= "
             f"{bounds.get('agreement')}):"]
    for name, figures in (gate.get("graphs") or {}).items():
        lines.append(f"  - `{name}`: cosine mean {figures['cosine_mean']:.5f} (min {figures['cosine_min']:.5f}), "
                     f"{figures['agreement_kind']} agreement {_judged_agreement(figures)}")
    return lines


def _judged_agreement(figures: dict[str, Any]) -> str:
    """The gate's agreement: judged clips only, near-ties forgiven (export/accuracy.py); older reports
    (bare top-1 agreement) have no ``judged``."""
    if "judged" not in figures:
        return f"{figures['agreement']:.4f}"
    if figures["agreement"] is None:
        return "not measured (no held-out clip had an answer to get wrong)"
    return (f"{figures['agreement']:.4f} on {figures['judged']} of {figures['queries']} clips judged "
            f"(ties: within {figures['tie']:g} {figures['tie_units']})")


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
    spec = pretrained_spec(config, model_id)
    if spec is not None:
        names.insert(0, spec.dataset)
    if names and all("synthetic" in n for n in names):
        return ("- **Demo model**: trained on tclr-zoo's generated videos of moving shapes only, so it has seen no "
                "people, scenes or camera motion: it checks the pipeline and is not useful for real video.")
    if not names:
        return ("- Its training videos are not recorded, so their biases are unknown. Check its behaviour on your "
                "own footage before relying on it.")
    real = list(dict.fromkeys(KNOWN_DATASETS.get(dataset_key(n), n) for n in names if "synthetic" not in n))
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


__all__ = ["TEMPLATE_NAME", "card_results", "load_template", "parse_front_matter", "protocol_text", "render_model_card"]
