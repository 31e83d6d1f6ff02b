"""The annotation store: pairs labelled similar / dissimilar, the rounds that asked for them, the model versions.

One SQLite file (``annotations.sqlite`` beside the index by default) in WAL mode with ``synchronous=FULL``: an
answer is durable (fsynced into the write-ahead log) when :meth:`AnnotationStore.answer` returns, so a process
killed afterwards loses nothing that was acknowledged; readers never block the writer. Every call opens its own
connection, so threads and processes may share one file; writes are ``BEGIN IMMEDIATE`` transactions (one
writer at a time, others wait up to ``timeout`` seconds).

Tables (``meta`` holds the schema version; a newer one is refused):

- ``rounds``: one row per round of active learning (strategy, budget, status running / done / failed, the
  model version it produced). A partial unique index allows at most one ``running`` row, so two rounds cannot
  run at once even when two processes start them together.
- ``queries``: the pairs a round asked about (the pair, its informativeness score); an answer to a query id
  that is not here is an :class:`~rsir.feedback.UnknownPair`.
- ``answers``: the annotations: the pair (stored with ``a < b``: a pair is unordered), ``similar`` 0 / 1, who,
  when (UTC ISO-8601), the round and the model version they were given under, the source (``anneal`` for
  an answered query, ``feedback`` for relevance-feedback marks, ``oracle`` for simulated answers). A pair is
  answered once: a second answer is an :class:`~rsir.feedback.AnnotationConflict`.
- ``models``: the model versions (path, round, pairs they were trained on, metrics as JSON).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rsir.feedback import AnnotationConflict, FeedbackError, UnknownPair

SCHEMA_VERSION = 1
DB_NAME = "annotations.sqlite"
MAX_ID = 256
MAX_WHO = 128
SOURCES = ("anneal", "feedback", "oracle", "import")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
  id INTEGER PRIMARY KEY,
  strategy TEXT NOT NULL,
  budget INTEGER NOT NULL CHECK (budget >= 0),
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
  who TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  model_version INTEGER,
  error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_running_round ON rounds (status) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS queries (
  id INTEGER PRIMARY KEY,
  a TEXT NOT NULL,
  b TEXT NOT NULL,
  round INTEGER NOT NULL REFERENCES rounds (id),
  score REAL,
  created_at TEXT NOT NULL,
  CHECK (a < b),
  UNIQUE (a, b, round)
);
CREATE TABLE IF NOT EXISTS answers (
  id INTEGER PRIMARY KEY,
  a TEXT NOT NULL,
  b TEXT NOT NULL,
  similar INTEGER NOT NULL CHECK (similar IN (0, 1)),
  who TEXT NOT NULL,
  created_at TEXT NOT NULL,
  round INTEGER,
  model_version INTEGER,
  source TEXT NOT NULL,
  query_id INTEGER REFERENCES queries (id),
  CHECK (a < b),
  UNIQUE (a, b)
);
CREATE TABLE IF NOT EXISTS models (
  version INTEGER PRIMARY KEY,
  path TEXT NOT NULL,
  round INTEGER,
  n_pairs INTEGER NOT NULL,
  metrics TEXT NOT NULL,
  created_at TEXT NOT NULL
);
"""
_TABLES = {"meta", "rounds", "queries", "answers", "models"}


@dataclass(frozen=True)
class Answer:
    """One stored annotation (the pair unordered, stored with ``a < b``)."""

    id: int
    a: str
    b: str
    similar: bool
    who: str
    created_at: str
    round: int | None
    model_version: int | None
    source: str
    query_id: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    """UTC time stamp with microseconds (ISO-8601)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def check_id(value: Any, what: str = "id") -> str:
    """An archive id as the store keeps it: a non-empty string of at most MAX_ID characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID or "\x00" in value:
        raise FeedbackError(f"{what} {str(value)[:40]!r}: not an item id (a non-empty string of at most "
                            f"{MAX_ID} characters)")
    return value


def normalise_pair(a: Any, b: Any) -> tuple[str, str]:
    """The unordered pair as stored: ``(min, max)``; a pair of an item with itself is refused."""
    a, b = check_id(a, "first id"), check_id(b, "second id")
    if a == b:
        raise FeedbackError(f"pair ({a!r}, {b!r}): an item paired with itself")
    return (a, b) if a < b else (b, a)


def _check_similar(similar: Any) -> int:
    if isinstance(similar, bool):
        return int(similar)
    if isinstance(similar, int) and similar in (0, 1):
        return similar
    raise FeedbackError(f"answer {similar!r}: similar must be true / false (or 1 / 0)")


def _check_who(who: Any) -> str:
    if not isinstance(who, str) or not who.strip() or len(who) > MAX_WHO:
        raise FeedbackError(f"who {str(who)[:40]!r}: a non-empty name of at most {MAX_WHO} characters")
    return who.strip()


def _answer(row: sqlite3.Row) -> Answer:
    return Answer(int(row["id"]), row["a"], row["b"], bool(row["similar"]), row["who"], row["created_at"],
                  row["round"], row["model_version"], row["source"], row["query_id"])


class AnnotationStore:
    """Annotations in one SQLite file (created on first use); safe for several threads and processes."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / DB_NAME
        self.timeout = timeout
        if not self.path.parent.is_dir():
            raise FeedbackError(f"{self.path}: the folder for the annotation database does not exist")
        self._init()

    # -- connections ---------------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise FeedbackError(f"{self.path}: cannot open the annotation database ({e})") from None
        con.row_factory = sqlite3.Row
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise FeedbackError(f"{self.path}: the database refused WAL mode (journal_mode {mode})")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as e:
            con.close()
            raise FeedbackError(f"{self.path}: not an annotation database ({e})") from None
        return con

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = self._open()
        try:
            yield con
        except sqlite3.DatabaseError as e:
            raise FeedbackError(f"{self.path}: damaged annotation database ({e})") from None
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed (and fsynced) when the block ends, rolled back on error."""
        con = self._open()
        try:
            for attempt in range(50):
                try:
                    con.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:
                    # busy_timeout covers most waits; a WAL-recovery race can still answer "locked" at once
                    if "locked" not in str(e) or attempt == 49:
                        raise FeedbackError(f"{self.path}: the annotation database is busy ({e})") from None
                    time.sleep(0.02 * (attempt + 1))
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as e:
            raise AnnotationConflict(f"{self.path}: {e}") from None
        except sqlite3.DatabaseError as e:
            raise FeedbackError(f"{self.path}: damaged annotation database ({e})") from None
        finally:
            con.close()

    def _init(self) -> None:
        with self._write() as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise FeedbackError(f"{self.path}: an SQLite database of something else (tables "
                                    f"{', '.join(sorted(tables))}), not rsir annotations")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                con.execute("INSERT INTO meta VALUES ('format', 'rsir-annotations')")
            else:
                try:
                    version = int(row[0])
                except ValueError:
                    raise FeedbackError(f"{self.path}: damaged annotation database (schema version "
                                        f"{row[0]!r})") from None
                if version > SCHEMA_VERSION:
                    raise FeedbackError(f"{self.path}: annotation schema version {version} is newer than this "
                                        f"rsir reads ({SCHEMA_VERSION}); upgrade rsir")
            missing = _TABLES - {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if missing:
                raise FeedbackError(f"{self.path}: damaged annotation database (no table {sorted(missing)})")

    # -- rounds --------------------------------------------------------------------------------------------
    def start_round(self, strategy: str, budget: int, who: str = "system") -> int:
        """Open a round; :class:`AnnotationConflict` when one is running (checked inside the transaction)."""
        if not isinstance(budget, int) or budget < 0:
            raise FeedbackError(f"budget {budget!r}: a count of pairs, at least 0")
        who = _check_who(who)
        with self._write() as con:
            running = con.execute("SELECT id FROM rounds WHERE status = 'running'").fetchone()
            if running is not None:
                raise AnnotationConflict(f"round {running[0]} is still running; wait for it to finish")
            cur = con.execute("INSERT INTO rounds (strategy, budget, status, who, started_at) "
                              "VALUES (?, ?, 'running', ?, ?)", (strategy, budget, who, now()))
            return int(cur.lastrowid or 0)

    def finish_round(self, round_id: int, model_version: int | None = None, error: str | None = None) -> None:
        """Close a running round as done (with the model it produced) or failed (with the error)."""
        with self._write() as con:
            cur = con.execute("UPDATE rounds SET status = ?, finished_at = ?, model_version = ?, error = ? "
                              "WHERE id = ? AND status = 'running'",
                              ("failed" if error else "done", now(), model_version, error, round_id))
            if cur.rowcount != 1:
                raise AnnotationConflict(f"round {round_id} is not running")

    def running_round(self) -> dict[str, Any] | None:
        """The running round as a dict, or None."""
        with self._read() as con:
            row = con.execute("SELECT * FROM rounds WHERE status = 'running'").fetchone()
            return None if row is None else dict(row)

    def rounds(self) -> list[dict[str, Any]]:
        """Every round, oldest first."""
        with self._read() as con:
            return [dict(r) for r in con.execute("SELECT * FROM rounds ORDER BY id")]

    # -- queries -------------------------------------------------------------------------------------------
    def add_queries(self, round_id: int, pairs: Sequence[tuple[str, str]],
                    scores: Sequence[float] | None = None) -> list[int]:
        """Record the pairs a round asks about; pairs already answered or already pending are left out."""
        if scores is not None and len(scores) != len(pairs):
            raise FeedbackError(f"{len(pairs)} pairs but {len(scores)} scores")
        norm = [normalise_pair(a, b) for a, b in pairs]
        ids = []
        with self._write() as con:
            if con.execute("SELECT 1 FROM rounds WHERE id = ?", (round_id,)).fetchone() is None:
                raise UnknownPair(f"round {round_id} does not exist")
            stamp = now()
            for i, (a, b) in enumerate(norm):
                if con.execute("SELECT 1 FROM answers WHERE a = ? AND b = ?", (a, b)).fetchone():
                    continue
                if con.execute("SELECT 1 FROM queries q WHERE a = ? AND b = ? AND NOT EXISTS "
                               "(SELECT 1 FROM answers WHERE query_id = q.id)", (a, b)).fetchone():
                    continue
                cur = con.execute("INSERT INTO queries (a, b, round, score, created_at) VALUES (?, ?, ?, ?, ?)",
                                  (a, b, round_id, None if scores is None else float(scores[i]), stamp))
                ids.append(int(cur.lastrowid or 0))
        return ids

    def pending(self, limit: int = 1, round_id: int | None = None) -> list[dict[str, Any]]:
        """Unanswered queries, the most informative of the newest round first."""
        sql = ("SELECT q.* FROM queries q WHERE NOT EXISTS (SELECT 1 FROM answers WHERE a = q.a AND b = q.b)"
               + (" AND q.round = ?" if round_id is not None else "")
               + " ORDER BY q.round DESC, q.id LIMIT ?")
        args: tuple[Any, ...] = (round_id, int(limit)) if round_id is not None else (int(limit),)
        with self._read() as con:
            return [dict(r) for r in con.execute(sql, args)]

    def query(self, query_id: int) -> dict[str, Any]:
        """One query by id; :class:`UnknownPair` when there is none."""
        with self._read() as con:
            row = con.execute("SELECT * FROM queries WHERE id = ?", (int(query_id),)).fetchone()
        if row is None:
            raise UnknownPair(f"pair query {query_id} does not exist")
        return dict(row)

    # -- answers -------------------------------------------------------------------------------------------
    def answer(self, query_id: int, similar: bool, who: str, model_version: int | None = None) -> Answer:
        """Answer a query (a pair a round asked about); durable when this returns."""
        sim, who = _check_similar(similar), _check_who(who)
        if isinstance(query_id, bool) or not isinstance(query_id, int):
            raise FeedbackError(f"query id {query_id!r}: an integer")
        with self._write() as con:
            q = con.execute("SELECT * FROM queries WHERE id = ?", (query_id,)).fetchone()
            if q is None:
                raise UnknownPair(f"pair query {query_id} does not exist (no round asked about it)")
            old = con.execute("SELECT * FROM answers WHERE a = ? AND b = ?", (q["a"], q["b"])).fetchone()
            if old is not None:
                raise AnnotationConflict(f"pair ({q['a']!r}, {q['b']!r}) was already answered "
                                         f"({'similar' if old['similar'] else 'not similar'} by {old['who']})")
            return self._insert(con, q["a"], q["b"], sim, who, q["round"], model_version, "anneal", query_id)

    def add_pair(self, a: str, b: str, similar: bool, who: str, source: str = "feedback",
                 round_id: int | None = None, model_version: int | None = None) -> Answer:
        """Store a pair that no round asked about (relevance feedback, imports); a second answer conflicts."""
        return self.add_pairs([(a, b, similar)], who, source, round_id, model_version)[0]

    def add_pairs(self, rows: Iterable[tuple[str, str, bool]], who: str, source: str = "feedback",
                  round_id: int | None = None, model_version: int | None = None,
                  skip_duplicates: bool = False) -> list[Answer]:
        """Store several pairs in one transaction (all or none unless ``skip_duplicates``)."""
        if source not in SOURCES:
            raise FeedbackError(f"source {source!r}: one of {', '.join(SOURCES)}")
        who = _check_who(who)
        norm = [(*normalise_pair(a, b), _check_similar(s)) for a, b, s in rows]
        out = []
        with self._write() as con:
            for a, b, sim in norm:
                old = con.execute("SELECT * FROM answers WHERE a = ? AND b = ?", (a, b)).fetchone()
                if old is not None:
                    if skip_duplicates:
                        continue
                    raise AnnotationConflict(f"pair ({a!r}, {b!r}) was already answered "
                                             f"({'similar' if old['similar'] else 'not similar'} by {old['who']})")
                out.append(self._insert(con, a, b, sim, who, round_id, model_version, source, None))
        return out

    @staticmethod
    def _insert(con: sqlite3.Connection, a: str, b: str, sim: int, who: str, round_id: int | None,
                model_version: int | None, source: str, query_id: int | None) -> Answer:
        stamp = now()
        cur = con.execute("INSERT INTO answers (a, b, similar, who, created_at, round, model_version, source, "
                          "query_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (a, b, sim, who, stamp, round_id, model_version, source, query_id))
        return Answer(int(cur.lastrowid or 0), a, b, bool(sim), who, stamp, round_id, model_version, source,
                      query_id)

    def answers(self, round_id: int | None = None, source: str | None = None) -> list[Answer]:
        """Stored answers in the order they were given."""
        where: list[str] = []
        args: list[Any] = []
        if round_id is not None:
            where.append("round = ?")
            args.append(round_id)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        sql = "SELECT * FROM answers" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        with self._read() as con:
            return [_answer(r) for r in con.execute(sql, args)]

    def count(self) -> int:
        """How many pairs are answered."""
        with self._read() as con:
            return int(con.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def labelled_pairs(self) -> tuple[list[str], list[str], list[int]]:
        """All answers as three columns (first ids, second ids, similar 0 / 1) for training."""
        rows = self.answers()
        return [r.a for r in rows], [r.b for r in rows], [int(r.similar) for r in rows]

    # -- models --------------------------------------------------------------------------------------------
    def register_model(self, path: str, round_id: int | None, n_pairs: int,
                       metrics: dict[str, Any] | None = None) -> int:
        """Record a new model version (1, 2, ...) and return it."""
        with self._write() as con:
            cur = con.execute("INSERT INTO models (path, round, n_pairs, metrics, created_at) VALUES (?, ?, ?, ?, ?)",
                              (str(path), round_id, int(n_pairs), json.dumps(metrics or {}), now()))
            return int(cur.lastrowid or 0)

    def current_model(self) -> dict[str, Any] | None:
        """The newest model version, or None before the first round."""
        with self._read() as con:
            row = con.execute("SELECT * FROM models ORDER BY version DESC LIMIT 1").fetchone()
        if row is None:
            return None
        out = dict(row)
        out["metrics"] = json.loads(out["metrics"])
        return out

    # -- export --------------------------------------------------------------------------------------------
    def export_parquet(self, path: str | Path) -> Path:
        """Write every answer as a Parquet table (atomically)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from rsir.storage import atomic_file

        rows = [a.to_json() for a in self.answers()]
        cols = list(Answer.__dataclass_fields__)
        schema = pa.schema([("id", pa.int64()), ("a", pa.string()), ("b", pa.string()), ("similar", pa.bool_()),
                            ("who", pa.string()), ("created_at", pa.string()), ("round", pa.int64()),
                            ("model_version", pa.int64()), ("source", pa.string()), ("query_id", pa.int64())])
        table = pa.table({c: [r[c] for r in rows] for c in cols}, schema=schema)
        with atomic_file(path) as tmp:
            pq.write_table(table, tmp)
        return Path(path)
