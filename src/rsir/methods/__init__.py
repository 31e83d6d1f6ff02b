"""Methods: a method = encoder + head + losses + miner + recipe; METHODS maps names to recipe classes."""

from rsir.methods.recipes import SAMPLERS, ClassifierRecipe, MilanE2ERecipe, MilanRecipe, make_miner

METHODS: dict[str, type] = {
    "classifier": ClassifierRecipe,
    "milan": MilanRecipe,
    "milan-e2e": MilanE2ERecipe,
}

__all__ = ["METHODS", "SAMPLERS", "ClassifierRecipe", "MilanE2ERecipe", "MilanRecipe", "make_miner"]
