"""User-facing errors: each names the item and the problem, so the CLI can print it without a traceback."""

from __future__ import annotations


class RsirError(Exception):
    """Base class of every error rsir reports to a user (CLI prints the message, service answers 4xx)."""


class FormatError(RsirError):
    """A source file or folder is not in the format it claims to be."""


class ItemError(RsirError):
    """One item (patch, image, caption) is unreadable or invalid."""

    def __init__(self, item: str, problem: str, path: str | None = None) -> None:
        self.item = item
        self.problem = problem
        self.path = path
        where = f" ({path})" if path else ""
        super().__init__(f"item {item!r}{where}: {problem}")


class ArchiveError(RsirError):
    """An archive is missing, incomplete, damaged or of a foreign format."""


class NotFoundError(RsirError):
    """An id or name that is not in the archive, index or registry."""
