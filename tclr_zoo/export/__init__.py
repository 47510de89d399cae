"""Export: a model -> a checked deployment folder (ONNX fp32/fp16/int8 graphs beside the saved model).

``exporter.export_model`` is the entry point (``tclr-zoo export`` calls it): it writes the saved-model
files, exports the ONNX graph (``onnx_export``), checks its rules for onnxruntime and TensorRT
(``graph_checks``) and its numbers against PyTorch (``parity``), and, when asked, quantizes it to int8
(``quantize``) on clips prepared as the SDK prepares them (``calibration``, ``int8_options``) behind an
accuracy gate (``accuracy``). Every check runs in a staging folder, so an export folder that exists
passed them all. ``triton`` writes a Triton Inference Server model repository for such a folder
(``tclr-zoo export --triton``).
"""


__all__: list[str] = []
