"""tclr-zoo: train, export and use TCLR video encoders.

The public names are imported on first use (PEP 562), so ``import tclr_zoo`` and ``tclr-zoo --help``
stay fast; ``from tclr_zoo import load_model`` works as usual. ``load_model`` (a ``VideoModel`` for
inference) and ``create_model`` (the network, an ``nn.Module``, timm-style) take the same model names.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "ModelNotFoundError": "models.registry", "create_model": "hub.factory", "list_models": "hub.factory",
    "list_pretrained": "models.pretrained",
    "VideoModel": "inference.model", "WindowEmbeddings": "inference.model", "load_model": "inference.model",
    "VideoIndex": "retrieval.index", "SearchHit": "retrieval.types", "contact_sheet": "retrieval.sheets",
    "export_model": "export.exporter",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tclr_zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
