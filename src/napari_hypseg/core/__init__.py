"""The model core: importable without Qt or napari.

Each module holds one idea (see docs/architecture.md); import from the modules themselves so that
light tasks (reading a volume, scoring) never pay for importing torch.
"""
