"""rsir.index."""
