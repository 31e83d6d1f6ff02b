"""rsir.losses."""
