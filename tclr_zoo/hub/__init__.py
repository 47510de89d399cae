"""The model side of the Hub, and every kind of model name:

* ``resolve``: what a name means -- a saved folder, ``local-dir:``, a training checkpoint,
  ``hf-hub:ORG/REPO[@REV]``, ``arch.tag``, or an architecture with random weights -- decided once for
  the SDK and every command, and the model loaded from it;
* ``checkpoint``: reading a training checkpoint (its envelope, and the model its recipe describes);
* ``identity``: what a model is (its weights and preprocessing as a digest), whatever its name;
* ``factory``: the public ``create_model`` / ``list_models``, with timm's habits;
* ``format``: the saved-model folder (= Hub repository layout); ``client``: the network (download,
  cache, offline mode, upload); ``card`` + ``card_metadata``: the model card; ``convert``: the
  converter of the TCLR authors' checkpoints.
"""

__all__: list[str] = []
