"""The annotation store: pairs labelled similar / dissimilar, the rounds that asked for them, the model versions.

One schema (SQLAlchemy Core tables, :data:`metadata`) on two databases:

- **SQLite** (the embedded default): one file, ``annotations.sqlite`` beside the index, in WAL mode with
  ``synchronous=FULL``: an answer is durable (fsynced into the write-ahead log) when :meth:`AnnotationStore.answer`
  returns, so a process killed afterwards loses nothing that was acknowledged; readers never block the writer.
  Writes are ``BEGIN IMMEDIATE`` transactions (one writer at a time, others wait up to ``timeout`` seconds).
- **PostgreSQL** (a team sharing one server): pass a URL instead of a path,
  ``postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE`` (``postgresql://`` is taken as psycopg 3; install it
  with ``pip install 'rsir[postgres]'``). A commit is durable with the server's default ``synchronous_commit=on``.
  The tables are created on first use in the database's default schema; other tables in that database are left
  alone. Item ids are compared with the ``C`` collation there, so the pair order (``a < b``, by code point) is
  the same as in Python and SQLite whatever the database's locale.

Every call opens its own connection (no pool), so threads and processes may share one database.

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

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from rsir.feedback import AnnotationConflict, FeedbackError, UnknownPair

SCHEMA_VERSION = 1
DB_NAME = "annotations.sqlite"
MAX_ID = 256
MAX_WHO = 128
SOURCES = ("anneal", "feedback", "oracle", "import")
BACKENDS = ("sqlite", "postgresql")

# ids compare by code point on both databases (PostgreSQL's default collation follows the locale)
_ID = sa.String(MAX_ID).with_variant(sa.String(MAX_ID, collation="C"), "postgresql")
_STAMP = sa.String(40)

metadata = sa.MetaData()
meta = sa.Table("meta", metadata, sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("value", sa.Text, nullable=False))
rounds = sa.Table(
    "rounds", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("strategy", sa.Text, nullable=False),
    sa.Column("budget", sa.Integer, sa.CheckConstraint("budget >= 0"), nullable=False),
    sa.Column("status", sa.String(16), sa.CheckConstraint("status IN ('running', 'done', 'failed')"),
              nullable=False),
    sa.Column("who", sa.Text, nullable=False),
    sa.Column("started_at", _STAMP, nullable=False),
    sa.Column("finished_at", _STAMP),
    sa.Column("model_version", sa.Integer),
    sa.Column("error", sa.Text),
)
sa.Index("one_running_round", rounds.c.status, unique=True,
         sqlite_where=rounds.c.status == "running", postgresql_where=rounds.c.status == "running")
queries = sa.Table(
    "queries", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("a", _ID, nullable=False),
    sa.Column("b", _ID, nullable=False),
    sa.Column("round", sa.Integer, sa.ForeignKey("rounds.id"), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("created_at", _STAMP, nullable=False),
    sa.CheckConstraint("a < b"),
    sa.UniqueConstraint("a", "b", "round"),
)
answers = sa.Table(
    "answers", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("a", _ID, nullable=False),
    sa.Column("b", _ID, nullable=False),
    sa.Column("similar", sa.Integer, nullable=False),
    sa.Column("who", sa.Text, nullable=False),
    sa.Column("created_at", _STAMP, nullable=False),
    sa.Column("round", sa.Integer),
    sa.Column("model_version", sa.Integer),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("query_id", sa.Integer, sa.ForeignKey("queries.id")),
    sa.CheckConstraint(sa.column("similar").in_([0, 1])),
    sa.CheckConstraint("a < b"),
    sa.UniqueConstraint("a", "b"),
)
models = sa.Table(
    "models", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("round", sa.Integer),
    sa.Column("n_pairs", sa.Integer, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("created_at", _STAMP, nullable=False),
)
_TABLES = set(metadata.tables)
_LOCK_KEY = 0x72736972  # PostgreSQL advisory lock that serialises creating the tables ("rsir")


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


def _answer(row: sa.Row[Any]) -> Answer:
    m = row._mapping
    return Answer(int(m["id"]), m["a"], m["b"], bool(m["similar"]), m["who"], m["created_at"],
                  m["round"], m["model_version"], m["source"], m["query_id"])


def is_url(target: str | Path) -> bool:
    """Whether a ``--db`` value is a database URL (``postgresql+psycopg://...``, ``sqlite:///...``), not a path."""
    return isinstance(target, str) and "://" in target


def database_url(target: str | Path) -> sa.URL:
    """The SQLAlchemy URL of a path (SQLite; a folder means ``folder/annotations.sqlite``) or a URL."""
    if not is_url(target):
        path = Path(target)
        if path.is_dir():
            path = path / DB_NAME
        return sa.URL.create("sqlite", database=str(path))
    try:
        url = sa.make_url(str(target))
    except sa.exc.ArgumentError as e:
        raise FeedbackError(f"annotation database URL: {e}") from None
    if url.get_backend_name() not in BACKENDS:
        raise FeedbackError(f"annotation database {url.render_as_string(hide_password=True)}: rsir keeps "
                            f"annotations in SQLite or PostgreSQL ({', '.join(BACKENDS)} URLs)")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


class AnnotationStore:
    """Annotations in SQLite (a path) or PostgreSQL (a URL); safe for several threads and processes."""

    def __init__(self, target: str | Path, timeout: float = 30.0) -> None:
        self.url = database_url(target)
        self.backend = self.url.get_backend_name()
        self.timeout = timeout
        self.path: Path | None = None
        if self.backend == "sqlite":
            if not self.url.database or self.url.database == ":memory:":
                raise FeedbackError("the annotation database must be a file (SQLite) or a PostgreSQL URL")
            self.path = Path(self.url.database)
            if not self.path.parent.is_dir():
                raise FeedbackError(f"{self.path}: the folder for the annotation database does not exist")
        self.where = str(self.path) if self.path is not None else self.url.render_as_string(hide_password=True)
        self.engine = self._engine()
        self._init()

    # -- connections ---------------------------------------------------------------------------------------
    def _engine(self) -> sa.Engine:
        try:
            if self.backend == "sqlite":
                engine = sa.create_engine(self.url, poolclass=NullPool, connect_args={"timeout": self.timeout})
                event.listen(engine, "connect", self._sqlite_connect)
                event.listen(engine, "begin", _sqlite_begin)
                return engine
            return sa.create_engine(self.url, poolclass=NullPool,
                                    connect_args={"connect_timeout": max(1, int(self.timeout))})
        except (ImportError, sa.exc.NoSuchModuleError) as e:
            raise FeedbackError(f"{self.where}: no driver for this database ({e}); for PostgreSQL: "
                                f"pip install 'rsir[postgres]'") from None

    def _sqlite_connect(self, con: sqlite3.Connection, _record: Any) -> None:
        """Each SQLite connection: WAL, fsync at every commit, foreign keys; transactions begun by hand."""
        con.isolation_level = None  # the driver's own BEGIN would be deferred; _sqlite_begin issues ours
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise FeedbackError(f"{self.where}: the database refused WAL mode (journal_mode {mode})")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as e:
            con.close()
            raise FeedbackError(f"{self.where}: not an annotation database ({e})") from None

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError as e:
            raise FeedbackError(f"{self.where}: cannot open the annotation database "
                                f"({str(e.orig).strip().splitlines()[0] if e.orig else e})") from None

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        con = self._connect()
        try:
            with con.begin():
                yield con
        except sa.exc.DBAPIError as e:
            raise FeedbackError(f"{self.where}: damaged annotation database ({_reason(e)})") from None
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One write transaction (IMMEDIATE on SQLite): committed and durable when the block ends, rolled back
        on error."""
        con = self._connect()
        try:
            con.execution_options(rsir_write=True)
            for attempt in range(50):
                try:
                    tx = con.begin()
                    break
                except sa.exc.OperationalError as e:
                    # busy_timeout covers most waits; a WAL-recovery race can still answer "locked" at once
                    if "locked" not in str(e.orig) or attempt == 49:
                        raise FeedbackError(f"{self.where}: the annotation database is busy ({_reason(e)})") from None
                    con.rollback()
                    time.sleep(0.02 * (attempt + 1))
            with tx:
                yield con
        except sa.exc.IntegrityError as e:
            raise AnnotationConflict(f"{self.where}: {_reason(e)}") from None
        except sa.exc.DBAPIError as e:
            raise FeedbackError(f"{self.where}: damaged annotation database ({_reason(e)})") from None
        finally:
            con.close()

    def _init(self) -> None:
        with self._write() as con:
            if self.backend == "postgresql":
                con.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
            tables = set(sa.inspect(con).get_table_names())
            if self.backend == "sqlite" and tables and "meta" not in tables:
                raise FeedbackError(f"{self.where}: an SQLite database of something else (tables "
                                    f"{', '.join(sorted(tables))}), not rsir annotations")
            if "meta" not in tables and tables & _TABLES:
                raise FeedbackError(f"{self.where}: holds tables {', '.join(sorted(tables & _TABLES))} of something "
                                    f"else (no rsir meta table)")
            if "meta" in tables:
                kv = {r.key: r.value for r in con.execute(sa.select(meta))}
                if kv and kv.get("format") != "rsir-annotations":
                    raise FeedbackError(f"{self.where}: its meta table belongs to something else, not rsir "
                                        f"annotations")
            metadata.create_all(con, checkfirst=True)
            row = con.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
            if row is None:
                con.execute(meta.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)},
                                            {"key": "format", "value": "rsir-annotations"}])
            else:
                try:
                    version = int(row[0])
                except ValueError:
                    raise FeedbackError(f"{self.where}: damaged annotation database (schema version "
                                        f"{row[0]!r})") from None
                if version > SCHEMA_VERSION:
                    raise FeedbackError(f"{self.where}: annotation schema version {version} is newer than this "
                                        f"rsir reads ({SCHEMA_VERSION}); upgrade rsir")
            missing = _TABLES - set(sa.inspect(con).get_table_names())
            if missing:
                raise FeedbackError(f"{self.where}: damaged annotation database (no table {sorted(missing)})")

    # -- rounds --------------------------------------------------------------------------------------------
    def start_round(self, strategy: str, budget: int, who: str = "system") -> int:
        """Open a round; :class:`AnnotationConflict` when one is running (checked inside the transaction)."""
        if not isinstance(budget, int) or budget < 0:
            raise FeedbackError(f"budget {budget!r}: a count of pairs, at least 0")
        who = _check_who(who)
        with self._write() as con:
            running = con.execute(sa.select(rounds.c.id).where(rounds.c.status == "running")).first()
            if running is not None:
                raise AnnotationConflict(f"round {running[0]} is still running; wait for it to finish")
            res = con.execute(rounds.insert().values(strategy=strategy, budget=budget, status="running", who=who,
                                                     started_at=now()))
            return _new_id(res)

    def finish_round(self, round_id: int, model_version: int | None = None, error: str | None = None) -> None:
        """Close a running round as done (with the model it produced) or failed (with the error)."""
        with self._write() as con:
            res = con.execute(rounds.update()
                              .where(rounds.c.id == round_id, rounds.c.status == "running")
                              .values(status="failed" if error else "done", finished_at=now(),
                                      model_version=model_version, error=error))
            if res.rowcount != 1:
                raise AnnotationConflict(f"round {round_id} is not running")

    def running_round(self) -> dict[str, Any] | None:
        """The running round as a dict, or None."""
        with self._read() as con:
            row = con.execute(sa.select(rounds).where(rounds.c.status == "running")).first()
            return None if row is None else dict(row._mapping)

    def rounds(self) -> list[dict[str, Any]]:
        """Every round, oldest first."""
        with self._read() as con:
            return [dict(r._mapping) for r in con.execute(sa.select(rounds).order_by(rounds.c.id))]

    # -- queries -------------------------------------------------------------------------------------------
    def add_queries(self, round_id: int, pairs: Sequence[tuple[str, str]],
                    scores: Sequence[float] | None = None) -> list[int]:
        """Record the pairs a round asks about; pairs already answered or already pending are left out."""
        if scores is not None and len(scores) != len(pairs):
            raise FeedbackError(f"{len(pairs)} pairs but {len(scores)} scores")
        norm = [normalise_pair(a, b) for a, b in pairs]
        ids = []
        with self._write() as con:
            if con.execute(sa.select(rounds.c.id).where(rounds.c.id == round_id)).first() is None:
                raise UnknownPair(f"round {round_id} does not exist")
            stamp = now()
            for i, (a, b) in enumerate(norm):
                if con.execute(sa.select(answers.c.id).where(answers.c.a == a, answers.c.b == b)).first():
                    continue
                open_query = sa.select(queries.c.id).where(
                    queries.c.a == a, queries.c.b == b, ~sa.exists().where(answers.c.query_id == queries.c.id))
                if con.execute(open_query).first():
                    continue
                res = con.execute(queries.insert().values(
                    a=a, b=b, round=round_id, score=None if scores is None else float(scores[i]), created_at=stamp))
                ids.append(_new_id(res))
        return ids

    def pending(self, limit: int = 1, round_id: int | None = None) -> list[dict[str, Any]]:
        """Unanswered queries, the most informative of the newest round first."""
        sel = sa.select(queries).where(~sa.exists().where(answers.c.a == queries.c.a, answers.c.b == queries.c.b))
        if round_id is not None:
            sel = sel.where(queries.c.round == round_id)
        sel = sel.order_by(queries.c.round.desc(), queries.c.id).limit(int(limit))
        with self._read() as con:
            return [dict(r._mapping) for r in con.execute(sel)]

    def query(self, query_id: int) -> dict[str, Any]:
        """One query by id; :class:`UnknownPair` when there is none."""
        with self._read() as con:
            row = con.execute(sa.select(queries).where(queries.c.id == int(query_id))).first()
        if row is None:
            raise UnknownPair(f"pair query {query_id} does not exist")
        return dict(row._mapping)

    # -- answers -------------------------------------------------------------------------------------------
    def answer(self, query_id: int, similar: bool, who: str, model_version: int | None = None) -> Answer:
        """Answer a query (a pair a round asked about); durable when this returns."""
        sim, who = _check_similar(similar), _check_who(who)
        if isinstance(query_id, bool) or not isinstance(query_id, int):
            raise FeedbackError(f"query id {query_id!r}: an integer")
        with self._write() as con:
            q = con.execute(sa.select(queries).where(queries.c.id == query_id)).first()
            if q is None:
                raise UnknownPair(f"pair query {query_id} does not exist (no round asked about it)")
            _refuse_answered(con, q.a, q.b)
            return self._insert(con, q.a, q.b, sim, who, q.round, model_version, "anneal", query_id)

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
                if skip_duplicates and _answered(con, a, b) is not None:
                    continue
                _refuse_answered(con, a, b)
                out.append(self._insert(con, a, b, sim, who, round_id, model_version, source, None))
        return out

    @staticmethod
    def _insert(con: sa.Connection, a: str, b: str, sim: int, who: str, round_id: int | None,
                model_version: int | None, source: str, query_id: int | None) -> Answer:
        stamp = now()
        res = con.execute(answers.insert().values(a=a, b=b, similar=sim, who=who, created_at=stamp, round=round_id,
                                                  model_version=model_version, source=source, query_id=query_id))
        return Answer(_new_id(res), a, b, bool(sim), who, stamp, round_id, model_version, source,
                      query_id)

    def answers(self, round_id: int | None = None, source: str | None = None) -> list[Answer]:
        """Stored answers in the order they were given."""
        sel = sa.select(answers)
        if round_id is not None:
            sel = sel.where(answers.c.round == round_id)
        if source is not None:
            sel = sel.where(answers.c.source == source)
        with self._read() as con:
            return [_answer(r) for r in con.execute(sel.order_by(answers.c.id))]

    def count(self) -> int:
        """How many pairs are answered."""
        with self._read() as con:
            return int(con.execute(sa.select(sa.func.count()).select_from(answers)).scalar_one())

    def labelled_pairs(self) -> tuple[list[str], list[str], list[int]]:
        """All answers as three columns (first ids, second ids, similar 0 / 1) for training."""
        rows = self.answers()
        return [r.a for r in rows], [r.b for r in rows], [int(r.similar) for r in rows]

    # -- models --------------------------------------------------------------------------------------------
    def register_model(self, path: str, round_id: int | None, n_pairs: int,
                       metrics: dict[str, Any] | None = None) -> int:
        """Record a new model version (1, 2, ...) and return it."""
        with self._write() as con:
            res = con.execute(models.insert().values(path=str(path), round=round_id, n_pairs=int(n_pairs),
                                                     metrics=json.dumps(metrics or {}), created_at=now()))
            return _new_id(res)

    def current_model(self) -> dict[str, Any] | None:
        """The newest model version, or None before the first round."""
        with self._read() as con:
            row = con.execute(sa.select(models).order_by(models.c.version.desc()).limit(1)).first()
        if row is None:
            return None
        out = dict(row._mapping)
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


def _reason(e: sa.exc.DBAPIError) -> str:
    """The driver's message, first line (no SQL, no parameters)."""
    text = str(e.orig) if e.orig is not None else str(e)
    return text.strip().splitlines()[0] if text.strip() else type(e.orig).__name__


def _sqlite_begin(con: sa.Connection) -> None:
    """SQLite: writers take the write lock at BEGIN (IMMEDIATE), so two never deadlock upgrading a read lock."""
    con.exec_driver_sql("BEGIN IMMEDIATE" if con.get_execution_options().get("rsir_write") else "BEGIN")


def _answered(con: sa.Connection, a: str, b: str) -> sa.Row[Any] | None:
    return con.execute(sa.select(answers).where(answers.c.a == a, answers.c.b == b)).first()


def _refuse_answered(con: sa.Connection, a: str, b: str) -> None:
    old = _answered(con, a, b)
    if old is not None:
        raise AnnotationConflict(f"pair ({a!r}, {b!r}) was already answered "
                                 f"({'similar' if old.similar else 'not similar'} by {old.who})")


def _new_id(res: sa.CursorResult[Any]) -> int:
    """The id the database gave the row just inserted."""
    key = res.inserted_primary_key
    if key is None or key[0] is None:
        raise FeedbackError("the annotation database returned no id for a new row")
    return int(key[0])
