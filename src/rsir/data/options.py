"""Per-format reader options (``rsir ingest --option KEY=VALUE``): declared by each reader, listed, validated.

Every reader module declares the options its reader takes as a tuple of :class:`ReaderOption`; the format
registry (``rsir.data.formats.FORMATS``) names that tuple, ``rsir ingest --help`` lists it, and
:func:`parse_reader_options` checks what a user passed before the reader runs: an unknown key is an error that
lists the valid ones (with the closest match), a value of the wrong kind (``size=abc``, ``s1=maybe``, a folder
that does not exist) is an error naming the option, and options left out get their declared defaults. The
reader receives the parsed values (int, bool, Path, list of str, str).
"""

from __future__ import annotations

import difflib
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsir.errors import FormatError

KINDS = ("str", "int", "bool", "list", "choice", "dir", "file", "path")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_METAVAR = {"int": "N", "bool": "true|false", "list": "A,B,...", "dir": "DIR", "file": "FILE", "path": "PATH",
            "str": "TEXT"}


@dataclass(frozen=True)
class ReaderOption:
    """One option of a reader: its key, kind, default and one-line help."""

    name: str
    kind: str
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: unknown kind {self.kind!r}")

    @property
    def metavar(self) -> str:
        return "|".join(self.choices) if self.kind == "choice" else _METAVAR[self.kind]

    def parse(self, fmt: str, value: Any) -> Any:
        """The typed value of ``value`` (a string from the command line, or already typed from the API)."""
        text = str(value).strip()

        def bad(why: str) -> FormatError:
            return FormatError(f"--option {self.name}={value!r} (format {fmt}): {why}")

        if self.kind == "int":
            if isinstance(value, bool):
                raise bad("expected an integer")
            try:
                n = int(text)
            except ValueError:
                raise bad("expected an integer") from None
            if self.minimum is not None and n < self.minimum:
                raise bad(f"must be at least {self.minimum}")
            return n
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise bad("expected true or false")
        if self.kind == "list":
            items = list(value) if isinstance(value, (list, tuple)) else [t.strip() for t in text.split(",")]
            items = [str(t).strip() for t in items if str(t).strip()]
            if not items:
                raise bad("expected a comma-separated list")
            return items
        if self.kind == "choice":
            if text.lower() not in self.choices:
                raise bad(f"expected one of {', '.join(self.choices)}")
            return text.lower()
        if self.kind in ("dir", "file", "path"):
            if not text:
                raise bad("expected a path")
            p = Path(text).expanduser()
            if self.kind == "dir" and not p.is_dir():
                raise bad("no such folder" if not p.exists() else "not a folder")
            if self.kind == "file" and not p.is_file():
                raise bad("no such file" if not p.exists() else "not a file")
            if self.kind == "path" and not p.exists():
                raise bad("no such file or folder")
            return p
        if not text:
            raise bad("expected a value")
        return text

    def describe(self) -> str:
        """``key=METAVAR`` and its help with the default, for --help."""
        default = "" if self.default is None else f" (default {_show(self.default)})"
        return f"{self.name}={self.metavar}: {self.help}{default}"


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def parse_reader_options(fmt: str, declared: Sequence[ReaderOption], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every declared option of ``fmt``, typed: the given value or the default. Unknown keys are errors."""
    by_name = {o.name: o for o in declared}
    out: dict[str, Any] = {o.name: o.default for o in declared}
    for key, value in (given or {}).items():
        k = str(key).strip()
        opt = by_name.get(k) or by_name.get(k.replace("_", "-"))
        if opt is None:
            if not by_name:
                raise FormatError(f"--option {k}: format {fmt} takes no options")
            close = difflib.get_close_matches(k, list(by_name), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FormatError(f"--option {k}: format {fmt} has no such option{hint}; its options: "
                              f"{', '.join(by_name)}")
        out[opt.name] = opt.parse(fmt, value)
    return out


def describe_options(fmt: str, declared: Sequence[ReaderOption], width: int = 100) -> str:
    """The options of one format as indented lines for --help ("(no options)" when there are none)."""
    if not declared:
        return f"  {fmt}: (no options)"
    lines = [f"  {fmt}:"]
    for o in declared:
        lines.extend(textwrap.wrap(o.describe(), width=width, initial_indent="    ", subsequent_indent="        "))
    return "\n".join(lines)
