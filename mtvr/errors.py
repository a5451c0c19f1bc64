"""Exceptions raised by mtvr. Every message names the bad input and says what to do."""


class MtvrError(Exception):
    """Base class of mtvr's errors."""


class ModelLoadError(MtvrError, OSError):
    """A model folder or Hub repository cannot be loaded (missing or corrupt files)."""


class UnsafeWeightsError(ModelLoadError):
    """A repository ships its weights only as pickle (``.bin``/``.pt``), which mtvr never loads."""


class IndexError_(MtvrError, ValueError):
    """Bad use of a video index (empty index, duplicate ids, wrong dimension)."""


class RecipeError(MtvrError, ValueError):
    """A training recipe is invalid."""


class DatasetBuildError(MtvrError, ValueError):
    """Annotations or options given to a dataset builder are invalid."""
