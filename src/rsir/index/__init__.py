"""rsir.index: one Index protocol (base.py) over faiss binary / float indexes and multi-index hashing."""

from rsir.index.base import BACKENDS, FORMAT_NAME, Index, IndexError_, IndexFileError, open_index
from rsir.index.factory import HAMMING_KINDS, make_index
from rsir.index.faiss_binary import HammingIndex
from rsir.index.faiss_float import FloatIndex

__all__ = ["BACKENDS", "FORMAT_NAME", "HAMMING_KINDS", "FloatIndex", "HammingIndex", "Index", "IndexError_",
           "IndexFileError", "make_index", "open_index"]
