"""rsir.train."""
