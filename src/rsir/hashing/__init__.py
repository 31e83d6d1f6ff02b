"""rsir.hashing."""
