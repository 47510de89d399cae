"""Video data: decoding (``decode``), clip sampling (``sampling``), sliding windows (``windows``),
transforms and the batched augmentation (``transforms``), dataset layouts and split files
(``layouts``), the training and evaluation datasets (``datasets``, ``classification``) and the
synthetic dataset (``synthetic``)."""

__all__: list[str] = []
