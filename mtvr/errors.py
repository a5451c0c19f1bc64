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


class EmptyIndexError(VideoIndexError):
    """A search of an index that holds nothing (or of no index): add videos first."""


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


class OptionTypeError(OptionError, TypeError):
    """An argument has the wrong type (e.g. a number where a path or a list of paths is expected)."""


class ComponentError(MtvrError, ValueError):
    """An unknown component name (loss, aggregator, translation backend, distance...) or bad component options;
    the message lists the registered names."""


class MissingDependencyError(MtvrError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DatasetError(MtvrError, ValueError):
    """A dataset folder, config or split cannot be read, or does not fit the model or the feature store."""


class FeatureStoreError(MtvrError, ValueError):
    """A feature store is missing, does not fit the features written to it, or lacks requested clips."""


class FeatureStoreNotFoundError(FeatureStoreError, FileNotFoundError):
    """A feature store folder does not exist."""


class MissingClipsError(FeatureStoreError, KeyError):
    """Clips asked of a feature store are not in it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class VideoSourceError(MtvrError, FileNotFoundError):
    """A video file, folder or list given as input does not exist or holds no videos."""


class EvaluationError(MtvrError, ValueError):
    """Inputs of a retrieval metric do not fit (shapes, NaN scores, empty evaluation sets)."""


class RecipeNotFoundError(RecipeError, FileNotFoundError):
    """A recipe file does not exist (or is not shipped with this installation)."""


class DemoError(MtvrError, RuntimeError):
    """A demo stage failed its own check (e.g. a model that did not learn)."""


class FileSystemError(MtvrError, OSError):
    """A file-system operation failed (the errno and the path are kept, as in :class:`OSError`)."""
