"""Archive formats, band handling, the Archive and the simulator."""
