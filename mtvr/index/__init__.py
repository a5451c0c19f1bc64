"""Video indexes: the backend interface (:class:`IndexBackend`), the faiss backend (:class:`VideoIndex`, the
embedded default) and the registry that opens other backends by URL scheme (:func:`open_index`).

Modules: ``base`` (interface, :class:`SearchHit`, registry), ``faiss_index`` (:class:`VideoIndex`), ``config``
(settings and factory strings), ``checks`` (ids, metadata; filters are :mod:`mtvr.filters`), ``persistence`` (the index folder),
``tuning`` (recall targets), ``blas`` (exact top-k fast path), ``lock`` (readers-writer lock),
``faiss_loader`` (faiss imported on first use).
"""

from .base import IndexBackend, SearchHit, open_index, register_backend, registered_backends, split_location
from .blas import blas_topk
from .checks import check_metadata, check_video_ids
from .config import KIND_ALIASES, IndexConfig, factory_string
from .faiss_index import VideoIndex
from .faiss_loader import faiss, gpu_available
from .persistence import IDS_FILE, INDEX_CONFIG_FILE, INDEX_FILE

# Milvus (milvus-lite://, milvus://, milvus+https://): the module is imported on first use, pymilvus only then
for _scheme in ("milvus-lite", "milvus", "milvus+https", "milvus+http"):
    register_backend(_scheme, "mtvr.index.milvus:open_milvus")

_blas_topk = blas_topk  # the name benchmarks and tests used before the index became a package

__all__ = [
    "IDS_FILE",
    "INDEX_CONFIG_FILE",
    "INDEX_FILE",
    "KIND_ALIASES",
    "IndexBackend",
    "IndexConfig",
    "SearchHit",
    "VideoIndex",
    "blas_topk",
    "check_metadata",
    "check_video_ids",
    "factory_string",
    "faiss",
    "gpu_available",
    "open_index",
    "register_backend",
    "registered_backends",
    "split_location",
]
