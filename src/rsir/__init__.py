"""rsir: search Earth-observation image archives by example image, by text and across sensors."""

from rsir.errors import RsirError

__version__ = "0.1.0"
__all__ = ["RsirError", "__version__"]
