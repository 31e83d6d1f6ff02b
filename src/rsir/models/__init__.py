"""rsir.models."""
