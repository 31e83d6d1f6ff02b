"""rsir.index: one Index protocol (base.py) over faiss binary / float indexes and multi-index hashing."""

from rsir.index.base import FORMAT_NAME, INDEX_KINDS, Index, IndexError_, IndexFileError, open_index
from rsir.index.faiss_binary import HammingIndex
from rsir.index.faiss_float import FloatIndex

__all__ = ["FORMAT_NAME", "INDEX_KINDS", "FloatIndex", "HammingIndex", "Index", "IndexError_", "IndexFileError",
           "open_index"]
