"""Using a model: ``load_model`` -> ``VideoModel`` (``model``), the PyTorch and onnxruntime backends
(``backends``) and the summary ``tclr-zoo info`` prints (``info``)."""


__all__: list[str] = []
