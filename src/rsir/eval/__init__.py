"""rsir.eval."""
