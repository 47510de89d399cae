"""tclr-zoo: train, export and use TCLR video encoders."""

__version__ = "0.1.0"

from .registry import ModelNotFoundError, create_model, list_models  # noqa: E402
from .sdk import VideoModel, WindowEmbeddings, load_model  # noqa: E402

__all__ = ["ModelNotFoundError", "VideoModel", "WindowEmbeddings", "__version__", "create_model", "list_models",
           "load_model"]
