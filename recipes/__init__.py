"""Bundled training recipes (YAML files); installed as ``tclr_zoo.recipes``."""
