"""rsir.methods."""
