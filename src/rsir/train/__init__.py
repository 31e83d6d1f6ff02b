"""The one training loop (fit), its configuration, training datasets and per-epoch validation."""

from rsir.train.loop import History, Recipe, TrainConfig, fit, resolve_device

__all__ = ["History", "Recipe", "TrainConfig", "fit", "resolve_device"]
