"""rsir.miners."""
