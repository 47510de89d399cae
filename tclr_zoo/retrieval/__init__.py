"""Nearest-neighbour search over video embeddings: the ``VideoIndex`` container, resumable builds
over many videos (``build``) and contact sheets of the results (``sheets``)."""
