"""``python -m tclr_zoo.cli``: the ``tclr-zoo`` command (what ``torchrun -m tclr_zoo.cli`` runs)."""

from .main import main

__all__: list[str] = []

main()
