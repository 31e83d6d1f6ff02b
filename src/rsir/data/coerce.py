"""How a band whose dtype differs from its modality's is stored: converted by a fixed rule, or refused.

An archive declares one dtype per modality (Sentinel-2 ``uint16`` reflectance * 10000, Sentinel-1 ``float32``
dB, pictures ``uint8``, ...). A reader may hand over bands of another dtype: float reflectances from a user's
own processing, DN saved as float32, int32 counts. Casting them blindly damages them without a word (0-0.3
reflectances become 0, 70,000 wraps to 4,464 in uint16, -5.5 wraps to 65,531), so every band goes through
:func:`coerce_modality`, which applies these rules and never wraps or clips:

1. The band already has the modality's dtype: stored as it is.
2. The modality stores integers:

   a. integer (or boolean) bands are stored exactly when every value lies in the dtype's range, else refused;
   b. float bands are judged together, per item and modality (so an item is never half scaled):
      - every value a whole number (DN saved as float): stored exactly when in range, else refused;
      - some fractional values, and the modality's unit is a scaled reflectance ``reflectance*K`` (Sentinel-2
        ``reflectance*10000``): the bands are reflectances; every value must lie in [0, 2]
        (:data:`REFLECTANCE_RANGE`) and is stored as ``round(value * K)``;
      - otherwise refused: fractional values would have to be rounded or truncated to an integer.
3. The modality stores floats: integer bands are converted (exactly up to 2**24 for float32, larger integers
   rounded); float bands are widened exactly or rounded to the narrower type; a value beyond the type's range
   (it would become infinite) is refused.

A refusal is an :class:`~rsir.errors.ItemError` naming the item, the modality, the band, the values found and
the dtype expected. Every conversion other than rule 1 is returned as a :class:`Conversion`, which
:class:`~rsir.data.archive.ArchiveWriter` counts in the manifest's ``conversions`` list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rsir.data.bands import ModalitySpec
from rsir.errors import ItemError

#: The values a float band may hold to be read as reflectances (rule 2b); bright snow and specular water exceed
#: 1 a little, and 2 * 10000 still fits uint16.
REFLECTANCE_RANGE = (0.0, 2.0)
_SCALED_UNIT = re.compile(r"^\s*reflectance\s*\*\s*(\d+(?:\.\d+)?)\s*$", re.IGNORECASE)

RULE_EXACT = "cast exactly (every value representable)"
RULE_WHOLE = "float whole numbers cast exactly"
RULE_REFLECTANCE = "float reflectance scaled by {k:g} and rounded"
RULE_FLOAT = "converted to the narrower float type (rounded)"
RULE_INT_FLOAT = "integers converted to {t} (those beyond {n} rounded)"


@dataclass(frozen=True)
class Conversion:
    """One band of one item stored after a conversion: from which dtype, by which rule."""

    modality: str
    band: str
    source_dtype: str
    target_dtype: str
    rule: str


def reflectance_scale(unit: str) -> float | None:
    """K of a ``reflectance*K`` unit (None for any other unit)."""
    m = _SCALED_UNIT.match(unit or "")
    return float(m.group(1)) if m else None


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _span(a: np.ndarray) -> tuple[float, float]:
    return (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)


def coerce_modality(item: str, spec: ModalitySpec, arrays: Mapping[str, np.ndarray],
                    source: str | None = None) -> tuple[dict[str, np.ndarray], list[Conversion]]:
    """The bands of one item and modality in the modality's dtype, by the rules of this module.

    ``arrays`` must already hold finite values where the modality forbids NaN (validate_bands checks that).
    Returns the converted bands and one :class:`Conversion` per band that was not already in the dtype.
    """
    target = np.dtype(spec.dtype)
    out: dict[str, np.ndarray] = {}
    conv: list[Conversion] = []

    def fail(band: str, problem: str) -> ItemError:
        return ItemError(item, f"modality {spec.name} band {band}: {problem}", source)

    def note(band: str, a: np.ndarray, rule: str) -> None:
        conv.append(Conversion(spec.name, band, str(a.dtype), str(target), rule))

    floats: dict[str, np.ndarray] = {}
    for b, raw in arrays.items():
        a = np.asarray(raw)
        if a.dtype == target:
            out[b] = a
        elif a.dtype.kind not in "biuf":
            raise fail(b, f"dtype {a.dtype} is not numeric; the archive stores {target}")
        elif target.kind == "f":
            out[b] = _to_float(a, target, lambda p, b=b: fail(b, p))  # type: ignore[misc]
            note(b, a, _float_rule(a, target))
        elif a.dtype.kind in "biu":
            lo, hi = _span(a)
            info = np.iinfo(target)
            if lo < info.min or hi > info.max:
                raise fail(b, f"{a.dtype} values {_fmt(lo)}..{_fmt(hi)} do not fit the archive's {target} "
                              f"({info.min}..{info.max}); refusing to store them wrapped or clipped")
            out[b] = a.astype(target)
            note(b, a, RULE_EXACT)
        elif not np.isfinite(a).all():
            n = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise fail(b, f"{n} NaN or infinite values cannot be stored in the archive's {target}")
        else:
            floats[b] = a
    if floats:
        out.update(_floats_to_int(spec, target, floats, fail, note))
    return {b: out[b] for b in arrays}, conv


def _float_rule(a: np.ndarray, target: np.dtype) -> str:
    """Whether converting ``a`` to the float ``target`` kept every value (the rule noted in the manifest)."""
    if a.dtype.kind == "f":
        return RULE_EXACT if a.dtype.itemsize <= target.itemsize else RULE_FLOAT
    exact_below = 2 ** (np.finfo(target).nmant + 1)
    lo, hi = _span(a)
    return RULE_EXACT if max(abs(lo), abs(hi)) <= exact_below else RULE_INT_FLOAT.format(t=target, n=exact_below)


def _to_float(a: np.ndarray, target: np.dtype, fail) -> np.ndarray:  # type: ignore[no-untyped-def]
    finfo = np.finfo(target)
    if a.dtype.kind == "f" and a.size:
        finite = a[np.isfinite(a)]
        if finite.size and float(np.abs(finite).max()) > float(finfo.max):
            lo, hi = _span(finite)
            raise fail(f"{a.dtype} values {_fmt(lo)}..{_fmt(hi)} exceed the range of the archive's {target} "
                       f"(+-{_fmt(float(finfo.max))}); they would become infinite")
    return a.astype(target)


def _floats_to_int(spec: ModalitySpec, target: np.dtype, floats: dict[str, np.ndarray], fail,  # type: ignore[no-untyped-def]
                   note) -> dict[str, np.ndarray]:
    info = np.iinfo(target)
    fractional = {b: bool(np.any(a != np.floor(a))) for b, a in floats.items()}
    if not any(fractional.values()):
        out = {}
        for b, a in floats.items():
            lo, hi = _span(a)
            if lo < info.min or hi > info.max:
                raise fail(b, f"{a.dtype} values {_fmt(lo)}..{_fmt(hi)} do not fit the archive's {target} "
                              f"({info.min}..{info.max}); refusing to store them wrapped or clipped")
            out[b] = a.astype(target)
            note(b, a, RULE_WHOLE)
        return out
    k = reflectance_scale(spec.unit)
    frac_band = next(b for b, f in fractional.items() if f)
    if k is None:
        lo, hi = _span(floats[frac_band])
        raise fail(frac_band, f"{floats[frac_band].dtype} values {_fmt(lo)}..{_fmt(hi)} have fractional parts; "
                              f"the archive stores {target} (unit {spec.unit or 'none'}) and does not round or "
                              f"truncate them")
    rlo, rhi = REFLECTANCE_RANGE
    out = {}
    for b, a in floats.items():
        lo, hi = _span(a)
        if lo < rlo or hi > rhi:
            raise fail(b, f"{a.dtype} values {_fmt(lo)}..{_fmt(hi)} (fractional, so read as reflectances: band "
                          f"{frac_band} has fractional values) lie outside the reflectance range "
                          f"{_fmt(rlo)}..{_fmt(rhi)} that is scaled by {k:g} into the archive's {target}; "
                          f"refusing to store them wrapped or clipped")
        scaled = np.rint(a.astype(np.float64) * k)
        if float(scaled.max(initial=0.0)) > info.max:
            raise fail(b, f"reflectances up to {_fmt(hi)} scaled by {k:g} exceed {target} ({info.max})")
        out[b] = scaled.astype(target)
        note(b, a, RULE_REFLECTANCE.format(k=k))
    return out
