"""Methods: a method = encoder + head + losses + miner + recipe; METHODS maps names to recipe classes."""

from rsir.methods.recipes import SAMPLERS, ClassifierRecipe, MilanE2ERecipe, MilanRecipe, make_miner
from rsir.methods.sscm import SSCMRecipe

METHODS: dict[str, type] = {
    "classifier": ClassifierRecipe,
    "milan": MilanRecipe,
    "milan-e2e": MilanE2ERecipe,
    "ss-cm": SSCMRecipe,
}

__all__ = ["METHODS", "SAMPLERS", "ClassifierRecipe", "MilanE2ERecipe", "MilanRecipe", "SSCMRecipe", "make_miner"]
