"""The simulator: labelled Sentinel-2 / Sentinel-1 patch archives of any size, in the archive format of real data.

What it makes
    Items shaped like reBEN (BigEarthNet v2.0): Sentinel-2 L2A, 12 bands at native resolution (10 m bands at
    ``size`` px, 20 m at ``size/2``, 60 m at ``size/6``; uint16 reflectance*10000) and a co-registered Sentinel-1
    GRD patch (VV, VH, float32 dB at ``size`` px), labelled in the 19-class BigEarthNet nomenclature, with
    catalog fields (split, country, tile, date, footprint, S1 name, captions) and optional bitemporal partners.

How a patch is made (all vectorised over a block of items, float32)
    1. Landscape: a biome (forest mosaic, agricultural plain, coastal, urban fringe, mountain, Mediterranean,
       wetland/lake district) is drawn, and 1-5 classes are drawn from it by weighted sampling without
       replacement, so that label co-occurrence follows the biome (a crude stand-in for the co-occurrence
       structure of CORINE Land Cover in BigEarthNet).
    2. Layout: a class map from an additively weighted Voronoi diagram of a few seeds evaluated on domain-warped
       coordinates (the warp is a smooth random field), which gives irregular regions with smooth boundaries.
       Labels are the classes whose pixel share is at least ``label_threshold``; the shares are kept in the
       catalog column ``class_shares`` (one float per class, in nomenclature order).
    3. Texture: each class mixes two surface states A and B per pixel with a weight taken from a class-specific
       random field: urban fabric/industrial units use 30 m building blocks (high frequency, binary), arable land
       and complex cultivation rotated rectangular parcels with straight edges (each parcel at its own crop
       stage), permanent crops row stripes, forests a granular crown field, grass/heath a medium-scale field,
       water a very smooth field.
    4. Spectra: each state is a linear mixture of endmembers (green broad-leaved canopy, needle-leaved canopy,
       grass, green crop, shrub, non-photosynthetic vegetation, soil, sand, clear water, turbid water, impervious
       surface, bright roof, shadow). Vegetation fractions follow a phenology curve (Gaussian in day of year per
       class) that moves green cover to bare soil (crops) or dry matter (grass, deciduous canopy) out of season.
       Per item and class the endmember fractions are jittered (intra-class variability), the whole patch gets a
       multiplicative illumination gain and a small additive haze (stronger in the blue), and sensor noise is
       added at each band's native resolution. The 20 m and 60 m bands are area averages (2x2, 6x6) of the 10 m
       scene, which is what a coarser detector integrates.
    5. Clouds (optional): a thresholded smooth field gives a cloud optical-thickness map that blends the surface
       towards a bright, spectrally flat cloud spectrum, with a displaced darker shadow.
    6. Sentinel-1: per-class VV and VH backscatter for the two states, mixed in linear power per pixel, an
       incidence-angle offset per patch, an additive noise floor (NESZ), then multiplicative speckle drawn from a
       unit-mean gamma distribution with L = 4.4 looks (the equivalent number of looks of IW GRDH), applied in
       linear power before conversion to dB.

Difficulty
    "easy": small intra-class variability, few classes per patch, one dominant class: the mean spectrum of a patch
    nearly identifies its labels. "hard": large fraction jitter and phenology offsets, per item each class
    spectrum is blended with the spectrum of another random class (mixtures, so classes overlap in mean spectra),
    stronger haze and noise, more classes per patch; the labels are then recoverable mainly from texture and
    spatial pattern and from Sentinel-1, whose per-class values are not confused. "medium" is in between.

Sources of the typical values, and what is approximate
    The endmember reflectances are typical values read off (by eye, at the Sentinel-2 band centres) from the
    ECOSTRESS / ASTER spectral library (Baldridge et al. 2009, Meerdink et al. 2019) and the USGS Spectral Library
    version 7 (Kokaly et al. 2017) for green leaves/canopies, dry grass, loam soils, quartz sand, water, asphalt
    and concrete, and from the usual canopy values of Sentinel-2 L2A over European land cover (red 0.02-0.05 and
    NIR 0.25-0.45 for closed canopies, needle-leaved darker in the NIR than broad-leaved; bare soil 0.1-0.3
    rising into SWIR; water below 0.03 in NIR and near 0 in SWIR). They are canopy-level approximations, not
    convolutions of library spectra with the S2 spectral response functions; B09 (water vapour) is treated as a
    surface band close to B8A, as it appears after L2A correction. Backscatter values are typical C-band
    sigma0 levels from the Sentinel-1 land-cover literature (e.g. Abdikan et al. 2016, ISPRS Archives XLI-B7,
    "Land cover mapping using Sentinel-1 SAR data"; Veloso et al. 2017, Remote Sens. Environ. 199, for crops;
    Dostalova et al. 2018 for forests): open water VV about -20 to -25 dB, urban 0 to -5 dB VV, forests VV about
    -7 to -8 and VH about -12 to -14 dB, grass and crops in between, seasonally variable. The ENL of 4.4 is the
    Sentinel-1 IW GRDH product specification. Layouts, textures, phenology curves and change events are
    plausible synthetic models, not fitted to BigEarthNet statistics; footprints and tile names are plausible
    (right UTM zone and latitude band for the country), not real granules.

Determinism
    Items are generated in blocks of ``BLOCK`` items, each block from its own random generator seeded by
    ``(seed, block index)``, so the same seed gives byte-identical pixels and catalog whatever ``workers`` is.
    ``n`` counts the primary items; each gets a bitemporal partner ``<id>_t2`` with probability ``bitemporal``
    (written right after it), so the archive has about ``n * (1 + bitemporal)`` rows.
"""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rsir.data.bands import S2_BANDS, S2_L2A, s1_spec, s2_spec
from rsir.data.change_grammar import GRAMMAR_VERSION, change_captions
from rsir.data.nomenclature import BEN19
from rsir.errors import RsirError

BLOCK = 32  # items per generator block; fixed so that results do not depend on the worker count
N_CLASSES = len(BEN19)
ENL = 4.4  # equivalent number of looks of Sentinel-1 IW GRDH
DIFFICULTIES = ("easy", "medium", "hard")
WAVELENGTHS = np.array([b.wavelength_nm for b in S2_L2A], dtype=np.float32)
GSD = np.array([b.gsd for b in S2_L2A])

# ---------------------------------------------------------------------------------------------------------------
# Endmember reflectances at the 12 L2A band centres: B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12
ENDMEMBERS: dict[str, list[float]] = {
    "broadleaf": [0.025, 0.030, 0.060, 0.030, 0.090, 0.260, 0.360, 0.400, 0.410, 0.400, 0.200, 0.090],
    "conifer": [0.020, 0.022, 0.045, 0.022, 0.070, 0.160, 0.210, 0.230, 0.240, 0.230, 0.110, 0.045],
    "grass": [0.030, 0.035, 0.075, 0.045, 0.110, 0.270, 0.360, 0.400, 0.410, 0.390, 0.240, 0.120],
    "crop": [0.025, 0.030, 0.070, 0.030, 0.100, 0.300, 0.420, 0.470, 0.480, 0.460, 0.220, 0.100],
    "shrub": [0.030, 0.035, 0.060, 0.045, 0.090, 0.190, 0.240, 0.270, 0.280, 0.270, 0.200, 0.110],
    "npv": [0.060, 0.070, 0.100, 0.130, 0.160, 0.190, 0.210, 0.230, 0.240, 0.240, 0.330, 0.250],
    "soil": [0.050, 0.070, 0.100, 0.130, 0.150, 0.170, 0.190, 0.200, 0.210, 0.210, 0.290, 0.240],
    "sand": [0.130, 0.160, 0.210, 0.260, 0.280, 0.300, 0.310, 0.320, 0.330, 0.330, 0.390, 0.340],
    "water": [0.070, 0.060, 0.050, 0.025, 0.018, 0.012, 0.010, 0.008, 0.007, 0.006, 0.004, 0.002],
    "turbid": [0.080, 0.080, 0.090, 0.070, 0.060, 0.035, 0.030, 0.025, 0.022, 0.018, 0.008, 0.004],
    "impervious": [0.090, 0.100, 0.110, 0.120, 0.130, 0.140, 0.145, 0.150, 0.155, 0.150, 0.190, 0.170],
    "roof": [0.170, 0.180, 0.200, 0.210, 0.220, 0.230, 0.240, 0.250, 0.250, 0.240, 0.270, 0.240],
    "shadow": [0.020, 0.015, 0.015, 0.010, 0.012, 0.020, 0.025, 0.030, 0.030, 0.030, 0.020, 0.010],
}
EM_NAMES = tuple(ENDMEMBERS)
# Per-band radiometric calibration of the endmember table: the ratio of the published BigEarthNet v1 band means
# (bigearthnet-models training statistics) to the simulator's medium-level means before calibration, measured by
# bench/radiometry_bench.py (256 items). Without it the simulated visible and SWIR bands were 1.3-1.7x the real
# ones (BENCHMARKS.md, "Simulator radiometry"); the ratios between endmembers within a band are unchanged.
RADIOMETRIC_GAIN = np.array([0.696, 0.769, 0.758, 0.764, 0.852, 0.969, 0.907, 0.887, 0.878, 0.896, 0.756, 0.714],
                            dtype=np.float32)
EM = np.array([ENDMEMBERS[k] for k in EM_NAMES], dtype=np.float32) * RADIOMETRIC_GAIN  # n_end x 12
_EMI = {k: i for i, k in enumerate(EM_NAMES)}
# Optically thick cloud: bright and nearly flat, lower in the SWIR (ice/water absorption)
CLOUD = np.array([0.45, 0.46, 0.47, 0.48, 0.48, 0.49, 0.49, 0.50, 0.50, 0.45, 0.38, 0.28], dtype=np.float32)

# Texture fields (index into the per-block stack of random fields)
F_SMOOTH, F_MEDIUM, F_FINE, F_BLOCKS, F_PARCELS, F_SMALL_PARCELS, F_STRIPES = range(7)


@dataclass(frozen=True)
class ClassModel:
    """How one class looks: two surface states (endmember fractions), texture, phenology, SAR backscatter."""

    a: dict[str, float]
    b: dict[str, float]
    texture: int
    t_scale: float          # per-pixel weight of state B = clip(t_scale * field + t_offset, 0, 1)
    t_offset: float
    green: str = ""         # endmember that follows the phenology curve
    winter: str = "npv"     # what the green fraction turns into out of season
    amp: float = 0.0        # share of the green fraction lost out of season
    peak: float = 180.0     # day of year of maximum greenness
    width: float = 60.0     # days (standard deviation of the Gaussian phenology curve)
    s1_a: tuple[float, float] = (-10.0, -17.0)  # (VV, VH) dB of state A
    s1_b: tuple[float, float] = (-10.0, -17.0)


CLASS_MODELS: tuple[ClassModel, ...] = (
    ClassModel({"impervious": .65, "roof": .25, "shadow": .10}, {"grass": .5, "impervious": .3, "broadleaf": .2},
               F_BLOCKS, 4.0, -1.8, "grass", "npv", .3, 160, 70, (-2.0, -10.0), (-10.0, -17.0)),
    ClassModel({"roof": .7, "impervious": .3}, {"impervious": .8, "soil": .1, "grass": .1},
               F_BLOCKS, 3.0, -0.9, "", "npv", 0, 180, 60, (-1.0, -10.0), (-8.0, -16.0)),
    ClassModel({"crop": .9, "soil": .1}, {"soil": .85, "npv": .15},
               F_PARCELS, 1.0, 0.0, "crop", "soil", .8, 170, 40, (-10.0, -16.0), (-12.0, -20.0)),
    ClassModel({"broadleaf": .55, "grass": .15, "soil": .3}, {"soil": .7, "grass": .3},
               F_STRIPES, 1.2, -0.1, "broadleaf", "npv", .5, 200, 60, (-9.0, -15.0), (-11.0, -18.0)),
    ClassModel({"grass": .95, "soil": .05}, {"grass": .7, "npv": .3},
               F_MEDIUM, 1.5, -0.25, "grass", "npv", .3, 150, 70, (-11.0, -17.5), (-12.0, -19.0)),
    ClassModel({"crop": .7, "grass": .2, "soil": .1}, {"soil": .6, "grass": .3, "npv": .1},
               F_SMALL_PARCELS, 1.0, 0.0, "crop", "soil", .5, 170, 50, (-10.0, -16.0), (-12.0, -19.0)),
    ClassModel({"grass": .4, "broadleaf": .4, "shrub": .2}, {"crop": .4, "soil": .4, "grass": .2},
               F_SMALL_PARCELS, 1.3, -0.15, "grass", "npv", .45, 170, 60, (-8.5, -14.5), (-11.0, -18.0)),
    ClassModel({"npv": .55, "grass": .25, "soil": .2}, {"broadleaf": .6, "shrub": .3, "shadow": .1},
               F_FINE, 5.0, -3.0, "grass", "npv", .5, 110, 50, (-11.0, -18.5), (-7.5, -13.5)),
    ClassModel({"broadleaf": .95, "shadow": .05}, {"broadleaf": .65, "shadow": .35},
               F_FINE, 1.5, -0.2, "broadleaf", "npv", .6, 190, 75, (-7.5, -13.0), (-8.5, -14.0)),
    ClassModel({"conifer": .9, "shadow": .1}, {"conifer": .55, "shadow": .4, "soil": .05},
               F_FINE, 1.5, -0.2, "conifer", "npv", .1, 190, 90, (-7.0, -13.0), (-8.0, -14.5)),
    ClassModel({"broadleaf": .8, "shadow": .2}, {"conifer": .8, "shadow": .2},
               F_FINE, 1.0, 0.0, "broadleaf", "npv", .35, 190, 75, (-7.5, -13.0), (-7.0, -13.5)),
    ClassModel({"grass": .45, "npv": .35, "soil": .2}, {"soil": .5, "sand": .3, "npv": .2},
               F_MEDIUM, 1.5, -0.25, "grass", "npv", .5, 170, 50, (-11.0, -18.0), (-12.5, -21.0)),
    ClassModel({"shrub": .7, "npv": .2, "soil": .1}, {"shrub": .4, "npv": .3, "grass": .3},
               F_MEDIUM, 1.5, -0.25, "shrub", "npv", .25, 170, 70, (-10.0, -16.5), (-11.0, -18.0)),
    ClassModel({"shrub": .5, "broadleaf": .3, "grass": .2}, {"grass": .4, "soil": .3, "npv": .3},
               F_MEDIUM, 2.0, -0.5, "broadleaf", "npv", .35, 180, 70, (-8.5, -14.5), (-10.5, -17.5)),
    ClassModel({"sand": .95, "npv": .05}, {"sand": .6, "soil": .2, "turbid": .2},
               F_SMOOTH, 1.0, -0.2, "", "npv", 0, 180, 60, (-15.0, -25.0), (-13.0, -22.0)),
    ClassModel({"water": .5, "grass": .5}, {"grass": .6, "shrub": .2, "npv": .2},
               F_MEDIUM, 2.0, -0.5, "grass", "npv", .4, 180, 60, (-16.0, -23.0), (-9.0, -15.0)),
    ClassModel({"turbid": .5, "grass": .3, "soil": .2}, {"grass": .5, "soil": .3, "turbid": .2},
               F_MEDIUM, 2.0, -0.5, "grass", "npv", .3, 180, 60, (-17.0, -24.0), (-11.0, -18.0)),
    ClassModel({"water": .95, "turbid": .05}, {"turbid": .9, "grass": .1},
               F_SMOOTH, 0.6, -0.1, "", "npv", 0, 180, 60, (-22.0, -28.0), (-19.0, -26.0)),
    ClassModel({"water": 1.0}, {"water": .7, "turbid": .3},
               F_SMOOTH, 0.6, -0.1, "", "npv", 0, 180, 60, (-20.0, -27.0), (-17.0, -25.0)),
)
assert len(CLASS_MODELS) == N_CLASSES

# Landscape biomes: class weights (BEN19 indices), probability, countries of BigEarthNet where they occur
BIOMES: dict[str, tuple[float, dict[int, float], tuple[str, ...]]] = {
    "forest mosaic": (0.24, {9: 5, 8: 3, 10: 4, 13: 3, 6: 2, 4: 1.5, 17: 1.5, 15: .7, 2: 1, 0: .5},
                      ("Finland", "Lithuania", "Austria", "Serbia")),
    "agricultural plain": (0.24, {2: 6, 5: 3, 4: 3, 6: 2, 0: 1.5, 8: 1.5, 3: 1, 1: .5, 17: .5},
                           ("Lithuania", "Belgium", "Serbia", "Austria")),
    "coastal": (0.08, {18: 6, 14: 3, 16: 2.5, 0: 1.5, 2: 1.5, 4: 1.5, 11: 1, 12: 1.5, 17: .5, 9: .7},
                ("Portugal", "Ireland", "Finland", "Lithuania")),
    "urban fringe": (0.12, {0: 6, 1: 4, 2: 2, 4: 2, 5: 2, 8: 1, 17: .7, 6: 1},
                     ("Belgium", "Luxembourg", "Austria", "Serbia", "Switzerland")),
    "mountain": (0.12, {9: 5, 11: 4, 12: 3, 13: 3, 10: 2.5, 4: 2, 8: 1, 17: 1},
                 ("Austria", "Switzerland", "Kosovo")),
    "mediterranean": (0.10, {3: 4, 7: 4, 12: 4, 2: 2, 5: 2.5, 13: 2, 8: 1.5, 6: 2, 0: .7}, ("Portugal",)),
    "wetland and lakes": (0.10, {15: 5, 17: 5, 9: 3, 10: 2, 4: 2, 13: 2, 8: 1.5, 16: .2},
                          ("Finland", "Ireland", "Lithuania")),
}
BIOME_NAMES = tuple(BIOMES)
# lon/lat boxes of the countries (inside their land area, roughly)
COUNTRIES: dict[str, tuple[float, float, float, float]] = {
    "Austria": (10.5, 46.6, 16.5, 48.6), "Belgium": (3.2, 50.0, 5.8, 51.2), "Finland": (22.0, 60.5, 29.5, 66.0),
    "Ireland": (-9.8, 51.8, -6.3, 54.8), "Kosovo": (20.3, 42.2, 21.5, 43.1), "Lithuania": (21.5, 54.2, 26.0, 56.2),
    "Luxembourg": (5.8, 49.5, 6.4, 50.1), "Portugal": (-8.8, 37.2, -7.0, 41.8), "Serbia": (19.2, 43.0, 22.2, 45.8),
    "Switzerland": (6.2, 46.2, 10.2, 47.6),
}
COUNTRY_NAMES = tuple(COUNTRIES)
# BigEarthNet v1 acquisitions run from June 2017 to May 2018
DATE0 = date(2017, 6, 1)
DATE_SPAN = 365

# Phrases for captions (several per class, chosen at random)
PHRASES: tuple[tuple[str, ...], ...] = (
    ("urban fabric", "a residential area", "houses", "a built-up area", "a small town"),
    ("industrial units", "commercial buildings", "an industrial area", "warehouses and factories"),
    ("arable land", "agricultural fields", "farmland", "cropland", "ploughed fields"),
    ("permanent crops", "orchards", "vineyards", "rows of fruit trees"),
    ("pastures", "meadows", "grazing land", "green pastures"),
    ("a patchwork of small fields", "complex cultivation patterns", "small mixed plots"),
    ("farmland mixed with natural vegetation", "fields and patches of natural vegetation"),
    ("agro-forestry land", "scattered trees over dry grassland", "wooded pasture"),
    ("broad-leaved forest", "deciduous woods", "a deciduous forest", "broad-leaved trees"),
    ("coniferous forest", "a pine forest", "evergreen conifers", "a spruce forest"),
    ("mixed forest", "mixed woodland", "a forest of conifers and broad-leaved trees"),
    ("natural grassland", "sparse vegetation", "open grassland", "rocky sparsely vegetated land"),
    ("heathland", "moorland", "shrubby heath", "sclerophyllous scrub"),
    ("transitional woodland", "shrubland", "young woodland and shrubs", "regrowing scrub"),
    ("a beach", "sand dunes", "sandy shores", "bright sand"),
    ("inland wetlands", "a marsh", "a bog", "reed beds"),
    ("coastal wetlands", "a salt marsh", "tidal flats", "a coastal marsh"),
    ("a lake", "a river", "inland water", "a reservoir"),
    ("the sea", "open sea", "coastal waters", "marine water"),
)
ADJECTIVES: dict[int, tuple[str, ...]] = {
    0: ("dense", "sprawling"), 1: ("large", "extensive"), 2: ("large", "extensive", "vast"),
    8: ("dense", "closed"), 9: ("dense", "dark"), 10: ("dense", "extensive"), 18: ("calm", "open"),
}
RELATIONS = ("next to", "beside", "bordering", "surrounded by", "adjacent to", "alongside")
WATER = {15, 16, 17, 18}


@dataclass(frozen=True)
class _Level:
    jitter: float         # sd of the log-normal multiplier on endmember fractions (intra-class variability)
    confusion: float      # max share of another random class blended into a class spectrum
    gain_sd: float        # sd of the per-patch illumination gain
    haze: float           # max additive path-radiance residual at 443 nm (reflectance)
    noise: float          # sd of the sensor noise (reflectance)
    pheno_sd: float       # sd of the per-patch phenology offset in days
    n_classes: tuple[float, ...]  # probabilities of 1..5 classes
    dominance: float      # seed weight of the dominant class (larger: bigger share)
    s1_sd: float          # sd of the per-item, per-class backscatter offset (dB)


LEVELS: dict[str, _Level] = {
    "easy": _Level(0.04, 0.0, 0.03, 0.0, 0.002, 8.0, (0.45, 0.35, 0.2, 0.0, 0.0), 0.8, 0.5),
    "medium": _Level(0.15, 0.25, 0.05, 0.005, 0.003, 20.0, (0.2, 0.3, 0.3, 0.15, 0.05), 0.5, 1.0),
    "hard": _Level(0.4, 0.85, 0.08, 0.015, 0.005, 35.0, (0.05, 0.2, 0.3, 0.3, 0.15), 0.3, 1.5),
}


@dataclass
class SimConfig:
    """What to simulate: item count, seed, difficulty, patch size, clouds, bitemporal share, labels, workers."""

    n: int = 1000
    seed: int = 0
    difficulty: str = "medium"
    size: int = 120
    clouds: float = 0.0
    bitemporal: float = 0.1
    unchanged: float = 0.5  # share of partnered patches left unchanged: LEVIR-CC's share (see CHANGE_WEIGHTS)
    after_event: float = 0.5  # share of those showing an earlier event's outcome at both dates
    label_threshold: float = 0.05
    workers: int = 1
    captions: tuple[int, int] = field(default=(3, 5))
    change_captions: int = 5  # per pair, as in LEVIR-CC

    def __post_init__(self) -> None:
        if self.n < 1:
            raise RsirError(f"simulate: n must be at least 1 (got {self.n})")
        if self.difficulty not in LEVELS:
            raise RsirError(f"simulate: difficulty {self.difficulty!r} is not one of {', '.join(DIFFICULTIES)}")
        if self.size < 6 or self.size % 6:
            raise RsirError(f"simulate: size {self.size} must be a positive multiple of 6 (the 60 m bands are "
                            f"size/6 pixels)")
        for name in ("clouds", "bitemporal", "unchanged", "after_event"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise RsirError(f"simulate: {name} is a probability in [0, 1] (got {v})")
        if not 0.0 < self.label_threshold <= 1.0:
            raise RsirError(f"simulate: label_threshold must be in (0, 1] (got {self.label_threshold})")
        if self.workers < 0:
            raise RsirError(f"simulate: workers must be >= 0 (0: one per CPU; got {self.workers})")
        self.captions = (int(self.captions[0]), int(self.captions[1]))
        if self.change_captions < 1:
            raise RsirError(f"simulate: change_captions must be at least 1 (got {self.change_captions})")


@dataclass
class SimItem:
    """One generated item: id, catalog fields, bands per modality and (on request) its class map."""

    id: str
    meta: dict[str, Any]
    s2: dict[str, np.ndarray]
    s1: dict[str, np.ndarray]
    class_map: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------------------------
# helpers
def class_shares(class_map: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Pixel share of each class in a class map (HxW) or a batch of them (BxHxW) -> (..., n_classes) float64."""
    cm = np.asarray(class_map)
    if cm.ndim == 2:
        return np.bincount(cm.ravel(), minlength=n_classes)[:n_classes] / cm.size
    b = cm.shape[0]
    flat = (cm.reshape(b, -1).astype(np.int64) + n_classes * np.arange(b)[:, None]).ravel()
    counts = np.bincount(flat, minlength=b * n_classes).reshape(b, n_classes)
    return counts / float(cm[0].size)


def labels_from_shares(shares: np.ndarray, threshold: float) -> list[str]:
    """Class names whose share is at least ``threshold``, in nomenclature order."""
    return [BEN19.classes[i] for i in np.flatnonzero(np.asarray(shares) >= threshold)]


def _fractions(d: dict[str, float]) -> np.ndarray:
    v = np.zeros(len(EM_NAMES), np.float32)
    for k, x in d.items():
        v[_EMI[k]] = x
    return v / v.sum()


FRAC_A = np.stack([_fractions(m.a) for m in CLASS_MODELS])  # C x n_end
FRAC_B = np.stack([_fractions(m.b) for m in CLASS_MODELS])
_GREEN = np.array([_EMI[m.green] if m.green else -1 for m in CLASS_MODELS])
_WINTER = np.array([_EMI[m.winter] for m in CLASS_MODELS])
_AMP = np.array([m.amp for m in CLASS_MODELS], np.float32)
_PEAK = np.array([m.peak for m in CLASS_MODELS], np.float32)
_WIDTH = np.array([m.width for m in CLASS_MODELS], np.float32)
_TEX = np.array([m.texture for m in CLASS_MODELS])
_TSCALE = np.array([m.t_scale for m in CLASS_MODELS], np.float32)
_TOFF = np.array([m.t_offset for m in CLASS_MODELS], np.float32)
S1_A = np.array([m.s1_a for m in CLASS_MODELS], np.float32)  # C x 2 (VV, VH) dB
S1_B = np.array([m.s1_b for m in CLASS_MODELS], np.float32)
NESZ_DB = np.array([-25.0, -27.0], np.float32)  # noise-equivalent sigma0 floor of IW (VV, VH)


def phenology(doy: np.ndarray, cls: np.ndarray | None = None) -> np.ndarray:
    """Greenness in [0, 1] per (item, class): Gaussian in circular day-of-year distance from the class peak."""
    peak = _PEAK if cls is None else _PEAK[cls]
    width = _WIDTH if cls is None else _WIDTH[cls]
    d = np.abs(np.asarray(doy, np.float32)[..., None] - peak)
    d = np.minimum(d, 365.0 - d)
    return np.exp(-0.5 * (d / width) ** 2).astype(np.float32)


def seasonal_fractions(frac: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Endmember fractions (B x C x n_end) with the green share moved to its winter endmember out of season."""
    g = phenology(doy)  # B x C
    lost_share = _AMP[None] * (1.0 - g)  # B x C
    out = frac.copy()
    has = _GREEN >= 0
    ci = np.flatnonzero(has)
    gi, wi = _GREEN[has], _WINTER[has]
    moved = out[:, ci, gi] * lost_share[:, ci]
    out[:, ci, gi] -= moved
    out[:, ci, wi] += moved
    return out


def class_spectrum(cls: int, doy: float, state: str = "a") -> np.ndarray:
    """Noise-free reflectance (12 bands) of a class state at a day of year, before any per-item variability."""
    frac = (FRAC_A if state == "a" else FRAC_B)[None]
    return (seasonal_fractions(frac, np.array([doy], np.float32))[0, cls] @ EM).astype(np.float32)


_QN = 1 << 16


@functools.cache
def _quantiles(kind: str) -> np.ndarray:
    """65,536 mid-point quantiles of the standard normal or of unit-mean gamma speckle with ENL looks."""
    from scipy import stats

    p = (np.arange(_QN) + 0.5) / _QN
    q = stats.norm.ppf(p) if kind == "normal" else stats.gamma.ppf(p, ENL) / ENL
    return np.asarray(q, np.float32)


def _draw(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse-transform samples from the quantile table (several times faster than numpy's normal/gamma)."""
    return np.take(_quantiles(kind), rng.integers(0, _QN, shape, dtype=np.uint16))


def _interp_matrix(g: int, size: int) -> np.ndarray:
    """size x g bilinear interpolation weights from a g-point grid to size pixels (align_corners=False)."""
    pos = np.clip((np.arange(size) + 0.5) * g / size - 0.5, 0, g - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, g - 1)
    w = (pos - lo).astype(np.float32)
    m = np.zeros((size, g), np.float32)
    m[np.arange(size), lo] += 1 - w
    m[np.arange(size), hi] += w
    return m


def _smooth(rng: np.random.Generator, b: int, g: int, size: int) -> np.ndarray:
    """B x size x size smooth random field in [0, 1]: uniform values on a g x g grid, bilinearly upsampled."""
    m = _interp_matrix(g, size)
    low = rng.random((b, g, g), dtype=np.float32)
    return m @ low @ m.T


def _area_mean(x: np.ndarray, f: int) -> np.ndarray:
    """Average f x f blocks of the last two axes (what a detector f times coarser integrates)."""
    if f == 1:
        return x
    # strided slice sums are several times faster than a reshape-mean over non-adjacent axes
    rows = x[..., 0::f, :].copy()
    for i in range(1, f):
        rows += x[..., i::f, :]
    out = rows[..., 0::f].copy()
    for j in range(1, f):
        out += rows[..., j::f]
    return out * np.float32(1.0 / (f * f))


def _hash01(iu: np.ndarray, iv: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """Deterministic uniform [0, 1) value per integer cell (iu, iv) and per-item salt (integer hash)."""
    h = (iu.astype(np.uint32) * np.uint32(73856093)) ^ (iv.astype(np.uint32) * np.uint32(19349663)) ^ salt
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return ((h >> np.uint32(8)).astype(np.float32) / np.float32(1 << 24))


def _texture_fields(rng: np.random.Generator, b: int, size: int, uses: np.ndarray | None = None) -> np.ndarray:
    """7 x B x H x W float32 random fields in [0, 1]: smooth, medium, fine (crowns), blocks, parcels, stripes.

    ``uses`` (B x 7) says which items need which field; the costly ones are computed only there (zeros
    elsewhere). Smooth, medium and blocks are always made: bitemporal changes draw on them.
    """
    from scipy.ndimage import uniform_filter

    s = size
    need = np.ones((b, 7), bool) if uses is None else uses
    fields = np.zeros((7, b, s, s), np.float32)
    fields[F_SMOOTH] = _smooth(rng, b, 4, s)
    fields[F_MEDIUM] = _smooth(rng, b, max(4, s // 10), s)
    blk = rng.random((b, s // 3 + 1, s // 3 + 1), dtype=np.float32)
    fields[F_BLOCKS] = np.repeat(np.repeat(blk, 3, axis=1), 3, axis=2)[:, :s, :s]
    sel = np.flatnonzero(need[:, F_FINE])
    if len(sel):
        white = rng.random((len(sel), s, s), dtype=np.float32)
        # a 3x3 box average of white noise has sd 0.096 around 0.5: stretch back to about the full [0, 1] range
        fields[F_FINE, sel] = np.clip((uniform_filter(white, size=(1, 3, 3), mode="reflect") - 0.5) * 3.0 + 0.5,
                                      0, 1)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    theta = rng.uniform(0, np.pi, b).astype(np.float32)[:, None, None]
    salt = rng.integers(0, 2**32, b, dtype=np.uint64).astype(np.uint32)[:, None, None]
    sizes = {F_PARCELS: rng.uniform(0.15, 0.3, b), F_SMALL_PARCELS: rng.uniform(0.05, 0.1, b)}
    period = rng.uniform(3.0, 5.0, b).astype(np.float32)[:, None, None]
    for k in (F_PARCELS, F_SMALL_PARCELS, F_STRIPES):
        sel = np.flatnonzero(need[:, k])
        if not len(sel):
            continue
        c, sn = np.cos(theta[sel]), np.sin(theta[sel])
        u = xx * c + yy * sn
        if k == F_STRIPES:
            # triangle-wave rows (cheaper than a sine, same period and range)
            fields[k, sel] = 2.0 * np.abs(np.modf(u / period[sel] + 1000.0)[0] - 0.5)
            continue
        v = -xx * sn + yy * c
        p = (sizes[k][sel] * s).astype(np.float32)[:, None, None]
        iu = np.floor(u / p + 1000).astype(np.int64)
        iv = np.floor(v / (0.6 * p) + 1000).astype(np.int64)
        fields[k, sel] = _hash01(iu, iv, salt[sel] + np.uint32(k))
    return fields


# ---------------------------------------------------------------------------------------------------------------
# per-item draws
@dataclass
class _Site:
    """Everything drawn for a block of places (shared by an item and its bitemporal partner)."""

    biome: np.ndarray           # B
    classes: list[list[int]]    # drawn classes per item, dominant first
    class_map: np.ndarray       # B x H x W uint8
    fields: np.ndarray          # 7 x B x H x W
    jit_a: np.ndarray           # B x C x n_end log-normal multipliers
    jit_b: np.ndarray
    conf_cls: np.ndarray        # B x C index of the class blended in (hard mixtures)
    conf_mix: np.ndarray        # B x C share of it
    pheno_off: np.ndarray       # B days
    s1_off: np.ndarray          # B x C x 2 dB
    country: list[str]
    lon: np.ndarray
    lat: np.ndarray
    tile: list[str]


def _draw_sites(cfg: SimConfig, lvl: _Level, rng: np.random.Generator, b: int) -> _Site:
    s = cfg.size
    probs = np.array([BIOMES[k][0] for k in BIOME_NAMES])
    biome = rng.choice(len(BIOME_NAMES), size=b, p=probs / probs.sum())
    n_cls = rng.choice(np.arange(1, 6), size=b, p=np.array(lvl.n_classes) / sum(lvl.n_classes))
    kmax = 9
    seed_xy = rng.uniform(0, s, (b, kmax, 2)).astype(np.float32)
    seed_w = rng.uniform(0, 1, (b, kmax)).astype(np.float32)
    seed_cls = np.zeros((b, kmax), np.int64)
    active = np.zeros((b, kmax), bool)
    extra = rng.integers(0, 4, b)
    classes: list[list[int]] = []
    for i in range(b):
        w = BIOMES[BIOME_NAMES[biome[i]]][1]
        ks = np.array(list(w))
        ws = np.array([w[k] for k in ks], np.float64)
        keys = np.log(ws) - np.log(-np.log(rng.random(len(ks))))  # Gumbel top-k: weighted, no replacement
        chosen = ks[np.argsort(-keys)[: n_cls[i]]].tolist()
        classes.append(chosen)
        m = len(chosen)
        k_items = m + int(extra[i])
        seed_cls[i, :m] = chosen
        if k_items > m:
            seed_cls[i, m:k_items] = rng.choice(chosen, size=k_items - m)
        active[i, :k_items] = True
        seed_w[i, 0] = 1.0 + lvl.dominance  # the dominant class gets the largest region
    # power diagram (weighted Voronoi) on domain-warped coordinates: irregular regions with smooth boundaries.
    # |p - s_k|^2 - r_k^2 = |p|^2 - 2 p.s_k + |s_k|^2 - r_k^2 and |p|^2 is common to all seeds, so the nearest
    # seed is the argmin of an affine function of the warped position: one batched matrix product.
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    warp = (_smooth(rng, 2 * b, 5, s).reshape(b, 2, s, s) - 0.5) * (0.6 * s)
    pos = np.empty((b, 3, s * s), np.float32)
    pos[:, 0] = (xx[None] + warp[:, 0]).reshape(b, -1)
    pos[:, 1] = (yy[None] + warp[:, 1]).reshape(b, -1)
    pos[:, 2] = 1.0
    radius = 0.45 * s * seed_w
    coef = np.empty((b, kmax, 3), np.float32)
    coef[:, :, 0], coef[:, :, 1] = -2.0 * seed_xy[:, :, 0], -2.0 * seed_xy[:, :, 1]
    coef[:, :, 2] = np.where(active, (seed_xy ** 2).sum(-1) - radius ** 2, np.float32(1e12))
    nearest = (coef @ pos).argmin(1)  # seeds on the middle axis: the reduction runs over contiguous rows
    cmap = np.take_along_axis(seed_cls, nearest, axis=1).astype(np.uint8).reshape(b, s, s)
    uses = np.zeros((b, 7), bool)
    for i, cl in enumerate(classes):
        uses[i, _TEX[cl]] = True
    fields = _texture_fields(rng, b, s, uses)
    n_end = len(EM_NAMES)
    jit_a = np.exp(rng.normal(0, lvl.jitter, (b, N_CLASSES, n_end))).astype(np.float32)
    jit_b = np.exp(rng.normal(0, lvl.jitter, (b, N_CLASSES, n_end))).astype(np.float32)
    conf_cls = rng.integers(0, N_CLASSES, (b, N_CLASSES))
    conf_mix = rng.uniform(0, lvl.confusion, (b, N_CLASSES)).astype(np.float32)
    pheno_off = rng.normal(0, lvl.pheno_sd, b).astype(np.float32)
    s1_off = rng.normal(0, lvl.s1_sd, (b, N_CLASSES, 2)).astype(np.float32)
    country, lon, lat, tile = [], np.zeros(b), np.zeros(b), []
    for i in range(b):
        cs = BIOMES[BIOME_NAMES[biome[i]]][2]
        cn = cs[int(rng.integers(len(cs)))]
        x0, y0, x1, y1 = COUNTRIES[cn]
        lon[i], lat[i] = rng.uniform(x0, x1), rng.uniform(y0, y1)
        zone = int((lon[i] + 180) // 6) + 1
        band = "CDEFGHJKLMNPQRSTUVWX"[int((lat[i] + 80) // 8)]
        sq = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        tile.append(f"{zone}{band}{sq[int(rng.integers(len(sq)))]}{sq[int(rng.integers(20))]}")
        country.append(cn)
    return _Site(biome, classes, cmap, fields, jit_a, jit_b, conf_cls, conf_mix, pheno_off, s1_off,
                 country, lon, lat, tile)


def _class_spectra(site: _Site, idx: np.ndarray, doy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per item and class, the A and B state spectra (B x C x 12) at the items' dates."""
    out = []
    for frac, jit in ((FRAC_A, site.jit_a), (FRAC_B, site.jit_b)):
        f = seasonal_fractions(np.broadcast_to(frac, jit[idx].shape), doy + site.pheno_off[idx])
        f = f * jit[idx]
        f /= f.sum(-1, keepdims=True)
        spec = f @ EM  # B x C x 12
        # mixtures: part of another class's spectrum leaks into this class's (hard difficulty)
        other = np.take_along_axis(spec, site.conf_cls[idx][..., None], axis=1)
        m = site.conf_mix[idx][..., None]
        out.append(((1 - m) * spec + m * other).astype(np.float32))
    return out[0], out[1]


def _render(cfg: SimConfig, lvl: _Level, site: _Site, idx: np.ndarray, cmap: np.ndarray, doy: np.ndarray,
            rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """S2 bands (dict band -> B x h x w uint16), S1 (B x 2 x H x W float32 dB) and cloud cover per item."""
    b, s = len(idx), cfg.size
    fields = site.fields[:, idx]
    cm = cmap.astype(np.intp)
    tex = np.take_along_axis(fields, _TEX[cm][None], axis=0)[0]
    t = np.clip(_TSCALE[cm] * tex + _TOFF[cm], 0.0, 1.0)
    spec_a, spec_b = _class_spectra(site, idx, doy)
    flat = (cm + N_CLASSES * np.arange(b)[:, None, None]).ravel()
    gain = (1.0 + rng.normal(0, lvl.gain_sd, b)).clip(0.6, 1.5).astype(np.float32)[:, None, None]
    haze = rng.uniform(0, lvl.haze, b).astype(np.float32)
    # path-radiance residual falls off roughly as lambda^-2 (between Rayleigh and aerosol scattering)
    haze_k = haze[:, None] * (443.0 / WAVELENGTHS[None]) ** 2
    cloudy = rng.random(b) < cfg.clouds
    alpha = shadow = None
    cover = np.zeros(b)
    if cloudy.any():
        cf = _smooth(rng, b, 6, s)
        thr = rng.uniform(0.45, 0.85, b).astype(np.float32)[:, None, None]
        alpha = np.clip((cf - thr) * 6.0, 0.0, 1.0) * cloudy[:, None, None]
        sh = max(1, s // 12)
        shadow = np.zeros_like(alpha)
        shadow[:, sh:, sh:] = alpha[:, :-sh, :-sh]
        cover = alpha.reshape(b, -1).mean(1)
    s2: dict[str, np.ndarray] = {}
    for k, band in enumerate(S2_BANDS):
        ak = np.take(spec_a[:, :, k], flat).reshape(b, s, s)
        dk = np.take(spec_b[:, :, k] - spec_a[:, :, k], flat).reshape(b, s, s)
        x = ak + dk * t
        if alpha is not None and shadow is not None:
            x = x * (1.0 - 0.6 * shadow * (1.0 - alpha))
            x = x + (CLOUD[k] / gain - x) * alpha  # cloud tops are not shaded by the terrain gain below
        # gain and haze are affine, so they commute with the area average: apply them on the coarser grid
        x = _area_mean(x, int(GSD[k] // 10)) * gain + haze_k[:, k, None, None]
        x += _draw(rng, "normal", x.shape) * np.float32(lvl.noise)
        s2[band] = np.clip(np.rint(x * np.float32(10000.0)), 1, 65535).astype(np.uint16)
    # Sentinel-1: linear power mixture of the two states, incidence offset, noise floor, gamma speckle, dB
    off = rng.normal(0, 0.7, b).astype(np.float32)
    s1 = np.empty((b, 2, s, s), np.float32)
    for p in range(2):
        lin_a = (10.0 ** ((S1_A[None, :, p] + site.s1_off[idx][:, :, p] + off[:, None]) / 10.0)).astype(np.float32)
        lin_b = (10.0 ** ((S1_B[None, :, p] + site.s1_off[idx][:, :, p] + off[:, None]) / 10.0)).astype(np.float32)
        la = np.take(lin_a, flat).reshape(b, s, s)
        ld = np.take(lin_b - lin_a, flat).reshape(b, s, s)
        sigma = la + ld * t + np.float32(10.0 ** (NESZ_DB[p] / 10.0))
        sigma *= _draw(rng, "speckle", (b, s, s))
        s1[:, p] = np.float32(10.0) * np.log10(sigma)
    return s2, s1, cover


# ---------------------------------------------------------------------------------------------------------------
# bitemporal changes
FORESTS = (8, 9, 10)
# Earlier land covers of the events (change events version 3): real archives build on fields, bare land, scrub or
# forest, clear forest for fields as well as for regrowth, and drain marshes as well as lakes (LEVIR-CC: "houses
# were built on the bare land", "the trees were removed and a road appeared"). Each kind of event starts from
# several land covers, so the caption's earlier state is often one that only the earlier image shows.
BUILDABLE = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
CROPS = (2, 3, 4, 5, 6)
CLEARED_TO = (13, 2, 4)  # regrowing scrub after clear-cutting, or fields and pasture
WATER_LOSS_TO = {17: (15, 11, 4), 15: (11, 4, 2)}  # lake -> marsh, dry grassland, meadow; marsh -> drained land
CHANGE_KINDS = ("deforestation", "urban growth", "flooding", "crop change", "water loss", "none")
# Change captions: rsir.data.change_grammar (frames x clauses x amounts; TRAIN pieces describe the training and
# validation pairs, every test-split caption holds a HELDOUT frame or clause). SimConfig.change_captions per pair.


CHANGE_WEIGHTS = {"deforestation": 1.0, "urban growth": 0.6, "flooding": 0.4, "crop change": 1.0, "water loss": 2.0}
# Unchanged pairs (SimConfig.unchanged, default 0.5). LEVIR-CC, the real change-captioning archive
# (../shared/data/levir-cc), has 5,039 unchanged pairs among its 10,077 (50.0 %, and 50 % in each split). Of the
# unchanged pairs, a share SimConfig.after_event (default 0.5) shows at both dates the state one of the change
# events leaves behind (the event happened before the first date: "prior_change"), so that the later image alone
# cannot tell a change from none: a forest with a clear-cut at both dates looks at the later date like a forest
# cleared between the dates. The others are patches as drawn ("fields that stayed fields"). LEVIR-CC cannot give
# this share (its unchanged captions never describe the scene); one half gives each change kind one look-alike for
# about two changed pairs.


def _region_mask(rng: np.random.Generator, region: np.ndarray, texture: np.ndarray, low: float, high: float
                 ) -> np.ndarray:
    """The part of ``region`` where ``texture`` is above a random quantile (a share in [low, high] of it)."""
    thr = np.quantile(texture[region], 1.0 - rng.uniform(low, high))
    return region & (texture >= thr)


def _change(rng: np.random.Generator, cmap: np.ndarray, smooth: np.ndarray, medium: np.ndarray
            ) -> tuple[np.ndarray, str, int, int]:
    """A later class map with one land-cover change event: (map, kind, from class, to class).

    Kinds: deforestation (forest -> transitional woodland, arable land or pasture), urban growth (fields, scrub,
    grassland or forest -> urban fabric or industry, a rectangle), flooding (low smooth ground -> inland water), crop
    change (one agricultural class -> another), water loss (part of a lake or marsh -> wetland, grassland, pasture or
    fields); "none" when the patch offers none of them. The earlier land cover is drawn among those the patch holds,
    and the changed share of it reaches the whole, so that it need not survive in the later image."""
    s = cmap.shape[0]
    shares = class_shares(cmap)
    land = ~np.isin(cmap, (17, 18))
    forests = [c for c in FORESTS if shares[c] >= 0.1]
    build = [c for c in BUILDABLE if shares[c] >= 0.1]
    farms = [c for c in CROPS if shares[c] >= 0.1]
    waters = [c for c in WATER_LOSS_TO if shares[c] >= 0.1]
    options = [k for k, ok in (("deforestation", forests), ("urban growth", build), ("flooding", land.mean() >= 0.2),
                               ("crop change", farms), ("water loss", waters)) if ok]
    if not options:
        return cmap.copy(), "none", -1, -1
    # flooding is possible on almost every patch: a lower weight keeps the kinds of change balanced
    w = np.array([CHANGE_WEIGHTS[k] for k in options])
    kind = options[int(rng.choice(len(options), p=w / w.sum()))]
    new = cmap.copy()
    if kind == "deforestation":
        src = int(rng.choice(forests))
        mask, dst = _region_mask(rng, cmap == src, medium, 0.4, 1.0), int(rng.choice(CLEARED_TO))
    elif kind == "urban growth":
        src = int(rng.choice(build))
        region = cmap == src
        ys, xs = np.nonzero(region)
        j = int(rng.integers(len(ys)))
        h, w = (rng.uniform(0.25, 0.6, 2) * s).astype(int)
        yy, xx = np.mgrid[0:s, 0:s]
        rect = (np.abs(yy - ys[j]) <= h // 2) & (np.abs(xx - xs[j]) <= w // 2)
        mask, dst = region & rect, int(rng.choice([0, 1]))
    elif kind == "crop change":
        src = int(rng.choice(farms))
        dst = int(rng.choice([c for c in CROPS if c != src]))
        mask = _region_mask(rng, cmap == src, medium, 0.5, 1.0)
    elif kind == "water loss":
        src = int(rng.choice(waters))
        dst = int(rng.choice(WATER_LOSS_TO[src]))
        mask = _region_mask(rng, cmap == src, smooth, 0.3, 0.8)
    else:
        thr = np.quantile(smooth[land], rng.uniform(0.15, 0.4))
        mask, dst = land & (smooth <= thr), 17
        src = int(np.bincount(cmap[mask], minlength=N_CLASSES).argmax()) if mask.any() else int(cmap[land][0])
    new[mask] = dst
    return new, kind, src, dst


# ---------------------------------------------------------------------------------------------------------------
# captions
#
# Train and validation captions use PHRASES, RELATIONS and the _TRAIN templates only. Test captions (split
# "test") also use HELDOUT_PHRASES, HELDOUT_RELATIONS and the _HELDOUT templates, which nothing else sees: at
# least half of a test item's captions have a held-out structure, and each class phrase in them is a held-out
# synonym with probability one half. A model trained on the training captions is thus tested on sentences
# whose wording it has not seen.
HELDOUT_PHRASES: tuple[tuple[str, ...], ...] = (
    ("a village", "dwellings", "a suburb"),
    ("a factory site", "a logistics park", "a commercial zone"),
    ("crop fields", "tilled farmland", "cultivated fields"),
    ("olive groves", "a fruit plantation"),
    ("grazing meadows", "cattle pasture"),
    ("a mosaic of small plots", "a patchwork of small mixed plots"),
    ("farms interspersed with wild vegetation", "cultivated land dotted with natural vegetation"),
    ("trees scattered over pasture", "a dehesa"),
    ("an oak forest", "a beech wood"),
    ("a fir forest", "needle-leaved trees"),
    ("woods of pine and oak", "a mixed stand of trees"),
    ("bare rocky ground", "a steppe"),
    ("heath and scrub", "low shrubby vegetation"),
    ("young trees regrowing after clearing", "a regenerating clearing"),
    ("a sandy beach", "dunes along the shore"),
    ("a peat bog", "a swamp"),
    ("a saltmarsh", "mudflats"),
    ("a pond", "a stream", "a freshwater lake"),
    ("a coastal lagoon", "the ocean"),
)
HELDOUT_RELATIONS = ("close to", "along", "around")
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six")
_SEASONS = ("winter", "winter", "spring", "spring", "spring", "summer", "summer", "summer", "autumn", "autumn",
            "autumn", "winter")
_DIRECTIONS = ("east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east")


def _phrase(rng: np.random.Generator, c: int, adjective: bool = False, heldout: bool = False) -> str:
    pool = PHRASES[c]
    if heldout and rng.random() < 0.5:
        pool = HELDOUT_PHRASES[c]
    p = pool[int(rng.integers(len(pool)))]
    if adjective and c in ADJECTIVES:
        adj = ADJECTIVES[c][int(rng.integers(len(ADJECTIVES[c])))]
        for art in ("a ", "the "):
            if p.startswith(art):
                return f"{art}{adj} {p[len(art):]}"
        return f"{adj} {p}"
    return p


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _amount(rng: np.random.Generator, share: float) -> str:
    if share >= 0.3:
        return str(rng.choice(["large areas of", "much", "wide stretches of"]))
    if share >= 0.12:
        return str(rng.choice(["some", "patches of", "areas of"]))
    return str(rng.choice(["scattered", "small patches of", "a little", "a few spots of"]))


def direction(class_map: np.ndarray, c: int) -> str:
    """Where class ``c`` lies in a class map (row 0 is north): "centre" or a compass direction of its centroid."""
    return mask_direction(class_map == c)


def mask_direction(mask: np.ndarray) -> str:
    """Where the true pixels of a mask lie (row 0 is north): "centre" or a compass direction of their centroid."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return "centre"
    h, w = mask.shape
    dy, dx = 0.5 - (ys.mean() + 0.5) / h, (xs.mean() + 0.5) / w - 0.5  # dy > 0: north
    if math.hypot(dx, dy) < 0.12:
        return "centre"
    return _DIRECTIONS[int(round(math.degrees(math.atan2(dy, dx)) / 45.0)) % 8]


@dataclass
class _CapContext:
    rng: np.random.Generator
    shares: np.ndarray
    present: list[int]
    heldout: bool
    class_map: np.ndarray | None
    season: str
    country: str

    def ph(self, c: int, adjective: bool = False) -> str:
        return _phrase(self.rng, c, adjective, self.heldout)

    def rel(self, heldout: bool = False) -> str:
        return str(self.rng.choice(HELDOUT_RELATIONS if heldout else RELATIONS))

    def where(self, c: int) -> str:
        return "centre" if self.class_map is None else direction(self.class_map, c)


def _train_templates(x: _CapContext) -> list[str]:
    rng, sh, present = x.rng, x.shares, x.present
    dom, others = present[0], present[1:]
    big = sh[dom] >= 0.5
    water = [c for c in present if c in WATER]
    land = [c for c in present if c not in WATER]
    out: list[str] = []
    if others:
        o1 = others[0]
        out.append(f"{x.ph(dom, big)} {x.rel()} {x.ph(o1)}")
        out.append(f"{x.ph(dom, big)} with " + _join([f"{_amount(rng, sh[o])} {x.ph(o)}" for o in others]))
        out.append(f"an area of {_join([x.ph(c) for c in present])}")
        out.append(f"{_NUMBERS[min(len(present), 6)]} kinds of land cover, mostly {x.ph(dom)}")
        if x.class_map is not None and x.where(dom) != x.where(o1):
            out.append(f"{x.ph(dom)} in the {x.where(dom)} and {x.ph(o1)} in the {x.where(o1)}")
        if x.season:
            out.append(f"{'an' if x.season[0] in 'aeiou' else 'a'} {x.season} scene of {x.ph(dom)} {x.rel()} {x.ph(o1)}")
    else:
        out.append(f"{x.ph(dom, True)} covering the whole patch")
        out.append(f"nothing but {x.ph(dom)}")
        out.append(f"a uniform area of {x.ph(dom)}")
        if x.season:
            out.append(f"{x.ph(dom)} in {x.season}")
    if x.country:
        out.append(f"{_join([x.ph(c) for c in present[:3]])} in {x.country}")
    pct = int(round(100 * sh[dom] / 5.0) * 5)
    out.append(f"about {pct} percent of the patch is {x.ph(dom)}")
    if water and land:
        out.append(f"{x.ph(water[0])} {rng.choice(['surrounded by', 'next to', 'beside'])} {x.ph(land[0])}")
    elif land:
        out.append(f"a dry landscape of {_join([x.ph(c) for c in land[:3]])} without open water")
    else:
        out.append(f"{x.ph(water[0])} seen from above")
    return out


def _heldout_templates(x: _CapContext) -> list[str]:
    sh, present = x.shares, x.present
    dom, others = present[0], present[1:]
    out: list[str] = []
    if others:
        o1 = others[0]
        out.append(f"this image shows {x.ph(dom)} and {x.ph(o1)}")
        out.append(f"mostly {x.ph(dom)}, with {x.ph(o1)} towards the {x.where(o1)}")
        out.append(f"we can see {x.ph(dom)} {x.rel(True)} {x.ph(o1)}")
        out.append(f"a satellite view of {_join([x.ph(c) for c in present])}"
                   + (f" photographed in {x.season}" if x.season else ""))
    else:
        out.append(f"this image shows only {x.ph(dom)}")
        out.append(f"the scene is entirely {x.ph(dom)}")
        out.append(f"we can see {x.ph(dom)} everywhere")
        out.append(f"a satellite view of {x.ph(dom)}" + (f" photographed in {x.season}" if x.season else ""))
    out.append(f"roughly {int(round(100 * sh[dom] / 10.0) * 10)} % of the ground is {x.ph(dom)}")
    return out


def make_captions(rng: np.random.Generator, shares: np.ndarray, threshold: float, k: int,
                  class_map: np.ndarray | None = None, split: str = "train", country: str = "",
                  when: date | None = None) -> list[str]:
    """k distinct sentences describing a patch: its classes (synonyms), amounts, counts, where they lie
    (``class_map``), the season (``when``) and the country. Test-split captions use held-out wording (see
    above)."""
    present = [int(c) for c in np.argsort(-shares, kind="stable") if shares[c] >= threshold]
    x = _CapContext(rng, shares, present, split == "test", class_map,
                    _SEASONS[when.month - 1] if when is not None else "", country)
    train = list(dict.fromkeys(_train_templates(x)))
    if not x.heldout:
        order = rng.permutation(len(train))
        return [train[i] for i in order[: min(k, len(train))]]
    held = list(dict.fromkeys(_heldout_templates(x)))
    n_held = min(len(held), max((k + 1) // 2, k - len(train)))
    pick = [held[i] for i in rng.permutation(len(held))[:n_held]]
    rest = [c for c in train if c not in pick]
    pick += [rest[i] for i in rng.permutation(len(rest))[: max(0, k - n_held)]]
    return [pick[i] for i in rng.permutation(len(pick))]


def _bare(phrase: str) -> str:
    """A class phrase without its article ("a lake" -> "lake"), for templates that bring their own."""
    for art in ("a ", "an ", "the "):
        if phrase.startswith(art):
            return phrase[len(art):]
    return phrase


def _change_captions(rng: np.random.Generator, kind: str, src: int, dst: int, pct: int, loc: str,
                     heldout: bool, k: int) -> list[str]:
    """k distinct change captions of one event (rsir.data.change_grammar), held-out wording for test pairs (kind
    "none": sentences saying nothing changed, naming the persisting land covers src and dst; dst < 0: one)."""
    return change_captions(rng, kind, lambda c: _bare(_phrase(rng, c)), src, dst, pct, loc, heldout, k)


def _main_covers(shares: np.ndarray, threshold: float) -> tuple[int, int]:
    """The patch's largest land cover and its second (-1 when that covers less than ``threshold``)."""
    order = np.argsort(-shares, kind="stable")
    return int(order[0]), (int(order[1]) if shares[order[1]] >= threshold else -1)


def _persisting_covers(shares: np.ndarray, src: int, dst: int, threshold: float) -> tuple[int, int]:
    """The two land covers an unchanged pair's captions name: an earlier event's (src, dst) when the patch still
    shows both; its outcome dst and the largest other cover when the event took all of src; without an earlier
    event (src < 0) the patch's two main covers."""
    if src < 0:
        return _main_covers(shares, threshold)
    if shares[src] >= threshold:
        return src, dst
    rest = shares.copy()
    rest[dst] = 0.0
    other = int(rest.argmax())
    return dst, (other if rest[other] >= threshold else -1)


# ---------------------------------------------------------------------------------------------------------------
# blocks, items, archive
def _doy(d: date) -> int:
    return d.timetuple().tm_yday


def _footprint(lon: float, lat: float, size: int) -> list[float]:
    half = size * 10.0 / 2.0
    dlat = half / 111_320.0
    dlon = half / (111_320.0 * math.cos(math.radians(lat)))
    return [lon - dlon, lat - dlat, lon + dlon, lat + dlat]


def n_blocks(cfg: SimConfig) -> int:
    """Number of generator blocks for a config."""
    return (cfg.n + BLOCK - 1) // BLOCK


def generate_block(cfg: SimConfig, block: int, with_maps: bool = False) -> list[SimItem]:
    """The items of one block (primary items each followed by its partner), reproducible from (seed, block)."""
    lvl = LEVELS[cfg.difficulty]
    start = block * BLOCK
    b = min(BLOCK, cfg.n - start)
    if b <= 0:
        return []
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed) & 0xFFFFFFFF, block, 0x51D]))
    site = _draw_sites(cfg, lvl, rng, b)
    dates = [DATE0 + timedelta(days=int(d)) for d in rng.integers(0, DATE_SPAN, b)]
    split_u = rng.random(b)
    partner = rng.random(b) < cfg.bitemporal
    sat = rng.integers(0, 2, (b, 2))
    orbit = rng.integers(1, 144, b)
    minutes = rng.integers(0, 40, (b, 2))
    n_caps = rng.integers(cfg.captions[0], cfg.captions[1] + 1, b)
    # Unchanged pairs and the events before their first date come from a stream of their own: with unchanged=0
    # every other draw is what it was before unchanged pairs existed.
    hrng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed) & 0xFFFFFFFF, block, 0xC4A]))
    still = partner & (hrng.random(b) < cfg.unchanged)
    prior: dict[int, tuple[str, int, int]] = {}
    for pi in np.flatnonzero(still & (hrng.random(b) < cfg.after_event)):
        after, kind, src, dst = _change(hrng, site.class_map[pi], site.fields[F_SMOOTH, pi],
                                        site.fields[F_MEDIUM, pi])
        if kind != "none":  # the scene shows the event's outcome at both dates
            site.class_map[pi] = after
            prior[int(pi)] = (kind, src, dst)
    doy = np.array([_doy(d) for d in dates], np.float32)
    s2, s1, cover = _render(cfg, lvl, site, np.arange(b), site.class_map, doy, rng)
    shares = class_shares(site.class_map)

    pidx = np.flatnonzero(partner)
    p_maps = np.zeros((len(pidx), cfg.size, cfg.size), np.uint8)
    changes: list[tuple[str, int, int]] = []
    for j, pi in enumerate(pidx):
        if still[pi]:
            p_maps[j] = site.class_map[pi]
            changes.append(("none", -1, -1))
            continue
        p_maps[j], kind, src, dst = _change(rng, site.class_map[pi], site.fields[F_SMOOTH, pi],
                                            site.fields[F_MEDIUM, pi])
        changes.append((kind, src, dst))
    p_dates = [dates[pi] + timedelta(days=int(g)) for pi, g in zip(pidx, rng.integers(30, 400, len(pidx)),
                                                                    strict=True)]
    if len(pidx):
        p_doy = np.array([_doy(d) for d in p_dates], np.float32)
        s2p, s1p, coverp = _render(cfg, lvl, site, pidx, p_maps, p_doy, rng)
        p_shares = class_shares(p_maps)

    def build(i: int, gid: int, d: date, sh: np.ndarray, s2b: dict[str, np.ndarray], s1b: np.ndarray,
              cov: float, cmap: np.ndarray, suffix: str, change: list[str] | None) -> SimItem:
        tile = site.tile[i]
        stamp = f"{d:%Y%m%d}T10{10 + minutes[i, 0]:02d}{int(gid % 60):02d}"
        pid = (f"S2{'AB'[sat[i, 0]]}_MSIL2A_{stamp}_N9999_R{orbit[i]:03d}_T{tile}_{gid // 100}_{gid % 100}"
               + suffix)
        d1 = d - timedelta(days=1)
        s1_id = (f"S1{'AB'[sat[i, 1]]}_IW_GRDH_1SDV_{d1:%Y%m%d}T16{50 + minutes[i, 1] // 4:02d}"
                 f"{int(gid % 60):02d}_{tile}_{gid // 100}_{gid % 100}{suffix}")
        u = split_u[i]
        split = "train" if u < 0.6 else ("validation" if u < 0.8 else "test")
        zone = int(tile[:2]) if tile[:2].isdigit() else int(tile[:1])
        meta: dict[str, Any] = {
            "split": split, "labels": labels_from_shares(sh, cfg.label_threshold),
            "country": site.country[i], "tile": tile, "date": d.isoformat(),
            "lon": float(site.lon[i]), "lat": float(site.lat[i]),
            "bbox": _footprint(float(site.lon[i]), float(site.lat[i]), cfg.size), "crs": f"EPSG:{32600 + zone}",
            "s1_id": s1_id, "source": "simulated", "biome": BIOME_NAMES[site.biome[i]],
            "class_shares": [float(x) for x in sh], "cloud_cover": float(cov),
            "captions": make_captions(rng, sh, cfg.label_threshold, int(n_caps[i]), cmap, split, site.country[i], d),
            "change_captions": change or [], "change_kind": "", "prior_change": "", "partner_id": "",
        }
        return SimItem(pid, meta, s2b, {"VV": s1b[0], "VH": s1b[1]}, cmap if with_maps else None)

    items: list[SimItem] = []
    jpos = {int(pi): j for j, pi in enumerate(pidx)}
    for i in range(b):
        gid = start + i
        it = build(i, gid, dates[i], shares[i], {k: v[i] for k, v in s2.items()}, s1[i], float(cover[i]),
                   site.class_map[i], "", None)
        items.append(it)
        if i in jpos:
            j = jpos[i]
            kind, src, dst = changes[j]
            before_kind = ""
            if kind == "none":  # name the persisting land covers: those of the earlier event, or the two main ones
                before_kind, src, dst = prior.get(i) or ("", -1, -1)
                src, dst = _persisting_covers(shares[i], src, dst, cfg.label_threshold)
            moved = p_maps[j] != site.class_map[i]
            pct = int(round(100 * float(moved.mean())))
            crng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed) & 0xFFFFFFFF, block, 0xCAB, i]))
            ch = _change_captions(crng, kind, src, dst, pct, mask_direction(moved), it.meta["split"] == "test",
                                  cfg.change_captions)
            it2 = build(i, gid, p_dates[j], p_shares[j], {k: v[j] for k, v in s2p.items()}, s1p[j],
                        float(coverp[j]), p_maps[j], "", ch)
            it2.id = f"{it.id}_t2"
            it2.meta["s1_id"] = f"{it2.meta['s1_id']}_t2"
            it2.meta["split"] = it.meta["split"]  # a pair never straddles splits
            it2.meta["partner_id"] = it.id
            it2.meta["change_kind"] = kind
            it2.meta["prior_change"] = before_kind
            it.meta["partner_id"] = it2.id
            items.append(it2)
    return items


def _block_worker(args: tuple[SimConfig, int]) -> list[SimItem]:
    return generate_block(*args)


def iter_items(cfg: SimConfig) -> Iterator[SimItem]:
    """All items in archive order; blocks are generated in ``cfg.workers`` processes (0: one per CPU)."""
    nb = n_blocks(cfg)
    workers = cfg.workers or (os.cpu_count() or 1)
    workers = min(workers, nb)
    if workers <= 1:
        for blk in range(nb):
            yield from generate_block(cfg, blk)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    window = 2 * workers + 1  # bounded look-ahead keeps memory flat when writing is the slower side
    with ctx.Pool(workers) as pool:
        pending = [pool.apply_async(_block_worker, ((cfg, blk),)) for blk in range(min(window, nb))]
        nxt = len(pending)
        while pending:
            items = pending.pop(0).get()
            if nxt < nb:
                pending.append(pool.apply_async(_block_worker, ((cfg, nxt),)))
                nxt += 1
            yield from items


def simulate(cfg: SimConfig, out: str | Path, overwrite: bool = False, progress: bool = False) -> Path:
    """Write a simulated archive (S2 + S1, BEN19 labels, captions, bitemporal partners) to ``out``."""
    from rsir.data.archive import ArchiveWriter

    info = {"simulator": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "simulated": True, "block": BLOCK, "change_grammar": GRAMMAR_VERSION}
    writer = ArchiveWriter(out, [s2_spec(cfg.size), s1_spec(cfg.size)], BEN19, "simulated", overwrite=overwrite,
                           info=info)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.n, desc="simulating", unit="item")
    try:
        for it in iter_items(cfg):
            writer.add(it.id, it.meta, {"s2": it.s2, "s1": it.s1})
            if bar is not None and not it.id.endswith("_t2"):
                bar.update(1)
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return path
