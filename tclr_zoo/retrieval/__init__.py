"""Nearest-neighbour search over video embeddings: the ``VideoIndex`` container (``index``), its
search kernels (``search``), its saved format (``storage``), the small shared types (``types``),
resumable builds over many videos (``build``) and contact sheets of the results (``sheets``)."""


__all__: list[str] = []
