"""Recipes: YAML files mapped onto dataclasses, with ``--set section.key=value`` overrides.

A recipe names everything a run depends on, so a ``results.json`` plus its recipe reproduce a run.
Bundled recipes (``recipes/*.yaml`` in a checkout) ship inside the wheel as ``tclr_zoo.recipes``.

* :class:`Recipe` and its sections (model, data, optim, train, eval); :func:`load_recipe` reads one
  (bundled name or file), applies the overrides and checks every value's type
  (:class:`RecipeError`, a one-line user mistake, when one is wrong).
* ``reference``: the numbers a run is compared with. ``published: arch.tag`` points at the paper's
  row in ``models.pretrained`` instead of copying it (:func:`expand_reference`), so the paper's
  numbers are written in one place.
* Resuming: which settings ``--resume --set`` may change (:data:`RESUMABLE`: none that would change
  what the epochs already trained mean), and the record of each change (``Recipe.resumes``), so the
  recipe a resumed run saves reproduces it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

if typing.TYPE_CHECKING:
    from ..models.preprocessing import Preprocessing


class RecipeError(ValueError):
    """A recipe that cannot be found, parsed or applied (a user mistake: the CLI exits 2)."""


@dataclass
class ModelConfig:
    arch: str = "r3d_18"
    model_args: dict[str, Any] = field(default_factory=dict)  # overrides of the registry's arguments
    head_dim: int = 128
    bn_mode: str = "faithful"  # "faithful": per-clip-group BatchNorm stats as the reference; "shared"


@dataclass
class DataConfig:
    dataset: str = "ucf101"  # "ucf101" (UCF101-style folder with split files) or "synthetic"
    root: str | None = None  # dataset folder; for "synthetic" the cache folder (default: cache dir)
    split: int = 1
    synthetic: dict[str, Any] = field(default_factory=dict)  # SyntheticConfig fields
    frames: int = 16
    stride: int = 4
    num_local: int = 4
    local_stride: int = 1
    min_frames: int | None = None  # default: the reference's rule (span * 7 // 8 + 1)
    size: int = 112
    channel_order: str = "bgr"  # faithful: the reference feeds OpenCV's BGR frames
    mean: list[float] | None = None  # faithful: no mean/std normalisation, pixels in [0, 1]
    std: list[float] | None = None
    augment: dict[str, Any] = field(default_factory=dict)  # AugmentConfig field overrides
    workers: int = 4  # decoding processes per training process (capped at its share of the CPUs)
    # Where the augmentation runs: "worker" (per clip, in the loader workers), "device" (the workers
    # decode; the training device crops, resizes and augments the whole batch at once), "auto":
    # device on CUDA, worker on CPU, where it measured faster (BENCHMARKS.md, P2).
    augment_on: str = "auto"


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-9
    warmup: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.5, 1.0])  # lr x, per epoch
    plateau_patience: int = 9  # epochs without a lower training loss before lr /= 1/factor
    plateau_factor: float = 0.1


@dataclass
class TrainConfig:
    epochs: int = 300
    batch_size: int = 40
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu
    amp: str = "auto"  # "auto" = bf16 autocast on CUDA, fp32 on CPU; or "bf16", "none"
    channels_last: str = "auto"  # "auto" = channels_last_3d on CUDA, and on CPU when amp is bf16
    temperature: float = 0.1
    loss_weights: dict[str, float] = field(default_factory=dict)  # LossWeights fields
    ic_only: bool = False  # ablation: instance-contrastive losses only
    max_steps_per_epoch: int | None = None  # for smoke tests
    # Clip groups per backbone pass ("auto": all 10 in one pass on CUDA, 2 on CPU, where smaller
    # activations stay in cache, which is faster (BENCHMARKS.md, P1); 1 on CPU with channels_last, whose
    # multi-group BatchNorm path is slow there). Same numbers either way.
    groups_per_pass: int | str = "auto"
    # Under torchrun: synchronise BatchNorm statistics across processes (SyncBatchNorm, CUDA only).
    # Only for model.bn_mode=shared; by default each process normalises over its own videos, as
    # the reference's DataParallel replicas did on each GPU. batch_size stays the global batch.
    sync_bn: bool = False
    # torch.compile the pretraining forward. Off by default: its compile time must pay back in the
    # run, and on CUDA its end-to-end gain and loss match are measured by bench/gpu.sh (P8) first.
    compile: bool = False


@dataclass
class EvalConfig:
    knn: bool = True  # the paper's kNN retrieval at the end, for the trained and the random-init model
    clips: int = 9
    frames: int = 16
    stride: int = 2
    crop_fraction: float = 0.8
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])
    batch_size: int = 4  # videos per forward pass


@dataclass
class Recipe:
    name: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reference: dict[str, Any] = field(default_factory=dict)  # the paper's / reference code's numbers
    # What `--resume --set` changed, appended in order: {"epoch": first epoch run with the change,
    # "set": {dotted key: new value}, "was": {dotted key: old value}}. The sections above keep the
    # values the run started with; `settings_from(epoch)` replays the changes. Running this recipe
    # afresh applies each change at its epoch, so it reproduces the resumed run.
    resumes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def settings_from(self, epoch: int | None = None) -> "Recipe":
        """The recipe in force from ``epoch`` (1-based) on: the resume changes made up to it applied
        (``None``: all of them, i.e. the settings the run ends with)."""
        current = copy.deepcopy(self)
        for change in self.resumes:
            if epoch is None or int(change["epoch"]) <= epoch:
                for key, value in change["set"].items():
                    _set_dotted(current, key, value)
        return current


# Settings `--resume` may change, because they do not alter what the epochs already trained mean:
# the run's length, the learning rate from the next epoch on (the warm-up / plateau factor reached
# so far is kept), where the data lives and how many processes decode it, and the closing evaluation.
RESUMABLE = ("train.epochs", "optim.lr", "data.root", "data.workers", "eval.")
# Identify a recipe rather than configure the run: never compared on resume.
_NOT_SETTINGS = ("name", "description", "reference", "resumes")


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig, "eval": EvalConfig}


def bundled_recipes(kind: str | None = None) -> list[str]:
    """Names of the recipes shipped with the package.

    ``kind="pretrain"``: for ``tclr-zoo pretrain``; ``kind="downstream"``: recipes with a
    ``protocol:`` key, for ``tclr-zoo finetune``; ``None``: all of them.
    """
    names = []
    for path in resources.files("tclr_zoo.recipes").iterdir():
        if path.name.endswith(".yaml"):
            downstream = "\nprotocol:" in "\n" + path.read_text()
            if kind is None or kind == ("downstream" if downstream else "pretrain"):
                names.append(path.name[:-5])
    return sorted(names)


def load_recipe(source: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Recipe:
    """A recipe from a YAML path or a bundled name (default ``demo``), with ``key=value`` overrides."""
    text, origin = recipe_text(source)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"{origin}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{origin}: a recipe must be a mapping of sections")
    if "protocol" in raw:
        raise RecipeError(f"{origin} is a downstream ({raw['protocol']}) recipe: run it with `tclr-zoo finetune`")
    recipe = recipe_from_dict(raw, origin)
    for item in overrides or []:
        apply_override(recipe, item)
    recipe.reference = expand_reference(recipe.reference, origin)  # again: an override may name a row
    validate_recipe(recipe, origin)
    return recipe


def validate_recipe(recipe: Recipe, origin: str = "recipe") -> None:
    """Check what the types alone cannot, before any work: the architecture and its arguments, and
    the keys of the nested settings (``data.synthetic``, ``data.augment``, ``train.loss_weights``)."""
    from ..data.datasets import AUGMENT_ON
    from ..data.synthetic import SyntheticConfig
    from ..data.transforms import AugmentConfig
    from ..losses import LossWeights
    from ..models.registry import resolve_model_args

    final = recipe.settings_from(None)
    checks = (("model.arch / model.model_args", lambda: resolve_model_args(final.model.arch, final.model.model_args)),
              ("data.synthetic", lambda: SyntheticConfig(**final.data.synthetic)),
              ("data.augment", lambda: AugmentConfig(**{"size": final.data.size, **final.data.augment})),
              ("train.loss_weights", lambda: LossWeights(**final.train.loss_weights)),
              ("data.augment_on", lambda: _one_of(final.data.augment_on, ("auto", *AUGMENT_ON))))
    for key, check in checks:
        try:
            check()
        except TypeError as err:  # an unknown keyword
            raise RecipeError(f"{origin}: {key}: {str(err).split('()', 1)[-1].strip()}") from None
        except (ValueError, KeyError) as err:
            raise RecipeError(f"{origin}: {key}: {err}") from None


def _one_of(value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")


def recipe_text(source: str | os.PathLike | None, kind: str = "pretrain") -> tuple[str, str]:
    """The YAML text of a recipe file or bundled recipe; ``kind`` picks which bundled names an
    unknown-recipe message offers (``"pretrain"`` or ``"downstream"``)."""
    name = "demo" if source is None else str(source)
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found")
        return path.read_text(), str(path)
    bundled = resources.files("tclr_zoo.recipes") / f"{name}.yaml"
    if not bundled.is_file():
        raise RecipeError(f"unknown recipe {name!r}: not a file, and the bundled {kind} recipes are "
                          f"{', '.join(bundled_recipes(kind))}")
    return bundled.read_text(), f"{name} (bundled)"


#: ``reference: {published: arch.tag}`` names a row of the paper's numbers instead of repeating them;
#: ``reference: {KEY: {published: arch.tag, result: NAME}}`` names one number of such a row.
PUBLISHED_KEY = "published"
RESULT_KEY = "result"


def recipe_from_dict(raw: dict[str, Any], origin: str = "recipe") -> Recipe:
    recipe = Recipe()
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise RecipeError(f"{origin}: section {key!r} must be a mapping")
            for sub_key, sub_value in value.items():
                _set_field(getattr(recipe, key), sub_key, sub_value, f"{origin}: {key}")
        else:
            _set_field(recipe, key, value, origin)
    recipe.reference = expand_reference(recipe.reference, origin)
    return recipe


def expand_reference(reference: dict[str, Any], origin: str = "recipe") -> dict[str, Any]:
    """A recipe's ``reference`` with its pointers into
    :data:`tclr_zoo.models.pretrained.PAPER_RESULTS` (the one home of the paper's numbers) replaced,
    in place, by the numbers: ``published: arch.tag`` by that whole row (pretraining recipes),
    ``KEY: {published: arch.tag, result: NAME}`` by one number of it (downstream recipes). Other
    keys are kept as they are."""
    expanded: dict[str, Any] = {}
    for key, value in reference.items():
        if key == PUBLISHED_KEY:
            expanded.update(_published_row(value, f"{origin}: reference.{key}"))
        elif isinstance(value, dict) and set(value) == {PUBLISHED_KEY, RESULT_KEY}:
            row = _published_row(value[PUBLISHED_KEY], f"{origin}: reference.{key}")
            if value[RESULT_KEY] not in row:
                raise RecipeError(f"{origin}: reference.{key}: {value[PUBLISHED_KEY]} has no result "
                                  f"{value[RESULT_KEY]!r}; known: {', '.join(row)}")
            expanded[key] = row[value[RESULT_KEY]]
        else:
            expanded[key] = value
    return expanded


def reference_numbers(reference: dict[str, Any]) -> dict[str, float]:
    """The numbers of an expanded ``reference``, which a model trained by the recipe records in its
    ``config.json`` (``training.reference``) so that its card can quote them without the recipe.
    Notes and numbers not transcribed yet (``None``) stay out."""
    return {key: value for key, value in reference.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def _published_row(name: Any, where: str) -> dict[str, Any]:
    from ..models.pretrained import published_reference

    try:
        return published_reference(str(name))
    except KeyError as err:
        raise RecipeError(f"{where}: {err.args[0]}") from None


def preprocessing_config(recipe: Recipe) -> Preprocessing:
    """The preprocessing of a model trained by ``recipe`` (its ``config.json`` section): its data
    settings (channel order, mean/std, size, frames, pretraining stride) and evaluation settings."""
    from ..hub.checkpoint import recipe_preprocessing  # torch: only when a model is saved

    return recipe_preprocessing(recipe.to_dict())


def apply_override(recipe: Recipe, item: str) -> None:
    """Apply one ``section.key=value`` override; the value is parsed as YAML (``3``, ``[1,2]``, ``null``)."""
    if "=" not in item:
        raise RecipeError(f"override {item!r} must look like section.key=value")
    dotted, text = item.split("=", 1)
    value = yaml.safe_load(text) if text.strip() else None
    parts = dotted.strip().split(".")
    target: Any = recipe
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            raise RecipeError(f"override {item!r}: unknown section {part!r}")
        target = getattr(target, part)
    if isinstance(target, dict):
        target[parts[-1]] = value
        return
    _set_field(target, parts[-1], value, f"override {item!r}")


def _set_dotted(recipe: Recipe, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    target: Any = recipe
    for part in parents:
        target = getattr(target, part)
    setattr(target, leaf, value)


def _set_field(obj: Any, key: str, value: Any, where: str) -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    if key not in names:
        raise RecipeError(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(names))}")
    if key in _SECTIONS and dataclasses.is_dataclass(getattr(obj, key)):
        raise RecipeError(f"{where}: {key!r} is a section; set its keys, e.g. {key}.<key>=value")
    setattr(obj, key, checked_value(value, typing.get_type_hints(type(obj))[key], f"{where}: {key}"))


def checked_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` if it fits the type ``hint`` of a config field, else a one-line :class:`RecipeError`.

    YAML gives ``--set train.epochs=one`` as the string ``'one'``; caught here, before anything
    runs, instead of as a TypeError deep in the run. A number written as text where a float is
    expected (``1e-3``, which YAML 1.1 reads as a string) is converted.
    """
    if _fits(value, hint):
        return value
    if isinstance(value, str) and _fits(0.5, hint) and not _fits("x", hint):
        try:
            return float(value)
        except ValueError:
            pass
    raise RecipeError(f"{where} must be {_describe(hint)}, got {value!r}")


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        element = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_fits(v, element) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return True  # a type this check does not know: left to the code that uses it


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             type(None): "null", dict: "a mapping"}
    return names.get(hint, names.get(origin, str(hint)))


def flat_settings(recipe: Recipe) -> dict[str, Any]:
    """``{"section.key": value}`` of every setting (what a resume compares)."""
    return {f"{section}.{key}": value for section, values in recipe.to_dict().items()
            if section not in _NOT_SETTINGS for key, value in values.items()}


@dataclass(frozen=True)
class ResumeRequest:
    """What ``pretrain --resume`` asks of a run folder: continue the recipe the run recorded (in its
    checkpoint), with ``overrides`` (``section.key=value``) as the only settings that may differ.

    The run's own overrides were recorded with it, so a bare ``--resume`` continues exactly what was
    started; comparing a freshly loaded recipe instead would report every setting the run was started
    with ``--set`` as a change. ``recipe_name``: the ``name`` of a RECIPE also given on the command
    line (``None``: none given); it must be the run's, since its file is not re-read.
    """

    overrides: tuple[str, ...] = ()
    recipe_name: str | None = None

    def __post_init__(self) -> None:
        probe = Recipe()
        for item in self.overrides:  # an unknown key or a value of the wrong type: refused before any work
            apply_override(probe, item)

    def check_recipe_name(self, recorded: Recipe, run: str) -> None:
        """A RECIPE given with ``--resume`` must be the run's own: its file is not re-read."""
        if self.recipe_name is not None and self.recipe_name != recorded.name:
            raise RecipeError(f"--resume: {run} holds a run of recipe {recorded.name!r}, not {self.recipe_name!r}; "
                              f"leave RECIPE out to continue it with the recipe it recorded, or give another --out "
                              f"to start {self.recipe_name!r} there")

    def applied_to(self, recorded: Recipe, run: str) -> Recipe:
        """The recipe asked for: the settings ``recorded`` ends with, this request's overrides on top
        (no ``resumes`` of its own, so that :func:`resume_changes` sees only the keys given now)."""
        self.check_recipe_name(recorded, run)
        requested = recorded.settings_from(None)
        requested.resumes = []
        for item in self.overrides:
            apply_override(requested, item)
        validate_recipe(requested, f"{run} (recorded recipe with --set)")
        return requested


def resume_changes(recorded: Recipe, requested: Recipe) -> dict[str, tuple[Any, Any]]:
    """``{key: (recorded value, requested value)}`` where the settings a run ends with differ from the
    ones asked for its resume; a key that may not change raises a one-line :class:`RecipeError`."""
    before, after = flat_settings(recorded.settings_from(None)), flat_settings(requested.settings_from(None))
    changes = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    for key, (old, new) in changes.items():
        if not key.startswith(RESUMABLE):
            raise RecipeError(f"--resume: {key} cannot change in a resumed run (it was {old!r}, now {new!r}); "
                              f"only {', '.join(k + '*' if k.endswith('.') else k for k in RESUMABLE)} can. "
                              "Start a new run instead: another --out, or --overwrite")
    return changes


__all__ = ["DataConfig", "EvalConfig", "ModelConfig", "OptimConfig", "PUBLISHED_KEY", "RESULT_KEY", "RESUMABLE",
           "Recipe", "RecipeError", "ResumeRequest", "TrainConfig", "apply_override", "bundled_recipes",
           "checked_value", "expand_reference", "flat_settings", "load_recipe", "preprocessing_config",
           "recipe_from_dict", "recipe_text", "reference_numbers", "resume_changes", "validate_recipe"]
