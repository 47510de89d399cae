"""The Hugging Face Hub side of a model: the saved-model folder format (``format``), what a name such as
``hf-hub:ORG/REPO`` or ``arch.tag`` means (``resolve``), the network client (``client``), the model
card (``card``) and the converter of the TCLR authors' checkpoints (``convert``)."""
