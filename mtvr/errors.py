"""Exceptions raised by mtvr. Every message names the bad input and says what to do."""


class MtvrError(Exception):
    """Base class of mtvr's errors."""


class ModelLoadError(MtvrError, OSError):
    """A model folder or Hub repository cannot be loaded (missing or corrupt files)."""


class UnsafeWeightsError(ModelLoadError):
    """A repository ships its weights only as pickle (``.bin``/``.pt``), which mtvr never loads."""


class UnsafeModulesError(ModelLoadError):
    """A sentence-transformers folder's ``modules.json`` names a class outside sentence-transformers."""


class VideoIndexError(MtvrError, ValueError):
    """Bad use of a video index (empty index, duplicate ids, wrong dimension, bad ids or metadata)."""


class IndexLoadError(MtvrError, OSError):
    """A saved index folder is missing a file, is truncated or corrupt, or its files disagree."""


class IndexConnectionError(MtvrError, ConnectionError):
    """An index server (e.g. Milvus) cannot be reached, or refused the connection; never names the token."""


class TranslationError(MtvrError, RuntimeError):
    """A translation backend failed or cannot translate a language pair."""


class VideoDecodeError(MtvrError, RuntimeError):
    """A video file cannot be decoded (missing, empty, corrupt, no video stream)."""


class HubConnectionError(MtvrError, OSError):
    """The Hugging Face Hub (or the endpoint configured) cannot be reached."""


class RecipeError(MtvrError, ValueError):
    """A training recipe is invalid."""


class DatasetBuildError(MtvrError, ValueError):
    """Annotations or options given to a dataset builder are invalid."""


class FilterError(MtvrError, ValueError):
    """A metadata filter is malformed (wrong type, unknown operator); the message names the key."""


class SegmentError(MtvrError, ValueError):
    """Bad segmenting options (a window or stride <= 0, a stride longer than the window, an unknown mode)."""


class OptionError(MtvrError, ValueError):
    """An option or argument has a value that cannot work (a count of 0, a port out of range, a device
    that does not exist...); the message names the option and the value."""


class QueryError(MtvrError, ValueError):
    """A search query is not a non-empty string that can be encoded as UTF-8."""


class QueryTypeError(QueryError, TypeError):
    """A search query is not a string (or a list of strings)."""
