"""rsir.query: the query engine every front end calls (CLI, service, eval, Python API), its filters and the
label matcher for text queries."""

from rsir.query.engine import Hit, QueryLimits, Results, SearchEngine
from rsir.query.items import Filters, QueryError

__all__ = ["Filters", "Hit", "QueryError", "QueryLimits", "Results", "SearchEngine"]
