"""Training data: moved to :mod:`mtvr.clipset` (one place reads dataset folders); these names stay importable."""

from ..clipset import ClipSet, build_clipset, load_clipset, load_rows, local_data_files

__all__ = ["ClipSet", "build_clipset", "load_clipset", "load_rows", "local_data_files"]
