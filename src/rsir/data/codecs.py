"""Learned codecs a compressed archive may store its patches with (``rsir compress``).

A compressed modality of an archive stores one bitstream per item instead of the safetensors band dict; the
manifest's ``compressed`` entry names the codec method and the codec directory inside the archive (``codec/``).
:data:`CODECS` maps the method to the loader of such a directory, imported only when an item is decoded, so
reading the catalog or the bitstreams never loads torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsir.errors import ArchiveError
from rsir.registry import Registry

#: codec method -> "module:function(codec_dir) -> codec" (the codec has .decode(bytes) and .decode_many(list))
CODECS: Registry = Registry("codec", {
    "sci-cbir": "rsir.compression.codec:load_codec",
}, ArchiveError, descriptions={
    "sci-cbir": "joint compression and hashing (SCI-CBIR): learned transform codec, factorised entropy model, "
                "hash codes from the latent"})


def load_archive_codec(archive_path: Path, entry: dict[str, Any]) -> Any:
    """The codec a compressed modality was written with (from the archive's own ``codec/`` copy)."""
    return CODECS.get(str(entry.get("method", "sci-cbir")))(archive_path / str(entry.get("dir", "codec")))
