"""Label nomenclatures: named, ordered class lists and multi-hot encoding over them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rsir.errors import RsirError

# The 19-class nomenclature of BigEarthNet-MM / reBEN (Sumbul et al., GRSM 2021), in its published order.
BIGEARTHNET_19: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)


@dataclass(frozen=True)
class Nomenclature:
    """An ordered list of class names under a name; index i of a multi-hot vector is classes[i]."""

    name: str
    classes: tuple[str, ...]
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise RsirError(f"nomenclature {self.name!r} repeats a class name")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.classes)})

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, label: str) -> int:
        """Position of a class name; raises a clear error for an unknown name."""
        try:
            return self._index[label]
        except KeyError:
            raise RsirError(f"label {label!r} is not in the {self.name} nomenclature") from None

    def encode(self, labels: Iterable[str]) -> np.ndarray:
        """Multi-hot uint8 vector of the given class names."""
        v = np.zeros(len(self.classes), dtype=np.uint8)
        for lab in labels:
            v[self.index(lab)] = 1
        return v

    def decode(self, vec: Sequence[int] | np.ndarray) -> list[str]:
        """Class names whose entry in the multi-hot vector is non-zero."""
        return [self.classes[i] for i in np.flatnonzero(np.asarray(vec))]

    def to_json(self) -> dict:
        return {"name": self.name, "classes": list(self.classes)}

    @classmethod
    def from_json(cls, d: dict) -> Nomenclature:
        return cls(name=str(d["name"]), classes=tuple(d["classes"]))


BEN19 = Nomenclature("bigearthnet-19", BIGEARTHNET_19)


def nomenclature_from_labels(name: str, labels: Iterable[Iterable[str]]) -> Nomenclature:
    """A nomenclature made of the sorted set of labels seen (for sources without a fixed class list)."""
    seen: set[str] = set()
    for labs in labels:
        seen.update(labs)
    return Nomenclature(name, tuple(sorted(seen)))
