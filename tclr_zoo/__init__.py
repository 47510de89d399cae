"""tclr-zoo: train, export and use TCLR video encoders."""

from .registry import ModelNotFoundError, create_model, list_models

__version__ = "0.1.0"

__all__ = ["ModelNotFoundError", "__version__", "create_model", "list_models"]
