"""rsir.service."""
