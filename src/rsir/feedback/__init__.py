"""Learning from the user: the annotation store, ANNEAL active learning and relevance feedback.

- :mod:`rsir.feedback.store`: pairs labelled similar / dissimilar (who, when, round, model version) in SQLite
  (WAL mode, one file beside the index); the rounds of active learning and the pairs each round asked about.
- :mod:`rsir.feedback.anneal`: ANNEAL (Hoxha et al., arXiv:2406.10107): MGUE / BCGUE uncertainty, clustering
  for diversity, a metric head on frozen features retrained with the contrastive loss each round.
- :mod:`rsir.feedback.rocchio`: relevance feedback, a query vector moved towards marked positives and away from
  marked negatives, then an exact re-rank.

Nothing here imports torch at module level: the service opens the store without loading it.
"""

from __future__ import annotations

from rsir.errors import RsirError


class FeedbackError(RsirError):
    """Bad annotation input or a damaged annotation database (the service answers 422)."""


class AnnotationConflict(FeedbackError):
    """A duplicate answer, or a round started while another runs (the service answers 409)."""


class UnknownPair(FeedbackError):
    """An answer for a pair nobody asked about, or for ids the archive does not hold (the service answers 404)."""
