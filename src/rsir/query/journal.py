"""The write-ahead journal of an INDEX directory: items added and deleted at run time, durably.

``INDEX/journal.wal`` is an append-only file beside the index. Every add (``POST /api/items``, ``rsir add``) and
delete (``DELETE /api/items/{id}``) is one record, written and fsynced before the write is acknowledged; the
index files themselves are never touched, so a crash cannot damage them. Opening the INDEX directory replays the
journal on top of the index in order.

File layout::

    header   16 bytes  b"RSIR-JOURNAL-v1\\n"
    record   4 bytes   magic b"RJR1"
             4 bytes   payload length L (little-endian uint32)
             4 bytes   CRC-32 of the payload (zlib.crc32, little-endian uint32)
             L bytes   payload = 4-byte header length H, H bytes of JSON, then the blobs the JSON lists

A record is complete when its frame, its payload and its checksum are all there. A process killed while
appending leaves at most one incomplete record, at the end: the next writer truncates it (it was never
acknowledged, since acknowledgement follows the fsync). A bad record with complete records after it is
damage, not a torn write, and opening fails with :class:`JournalError` naming the offset instead of silently
dropping acknowledged writes.

Compaction rewrites the live state (the adds not deleted since, in their order, and the deletes of archive
items) into a hidden sibling, fsyncs it, renames it over the journal and fsyncs the directory: at every instant
the name holds either the old or the new journal, each complete. One process writes a journal at a time (an
exclusive ``flock`` on it); readers (``rsir search``) replay it without the lock and ignore an incomplete tail.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rsir.data.archive import decode_value, encode_value
from rsir.errors import RsirError
from rsir.storage import partial_sibling

JOURNAL_NAME = "journal.wal"
HEADER = b"RSIR-JOURNAL-v1\n"
MAGIC = b"RJR1"
FRAME = struct.Struct("<4sII")
#: the largest payload a record may declare (a 12-band 120 x 120 float image is ~0.7 MB)
MAX_RECORD = 256 << 20


class JournalError(RsirError):
    """A journal is damaged in the middle, foreign, or held by another writer."""


@dataclass
class Record:
    """One journal entry: ``op`` is ``add`` (id, vector, labels, meta, bands) or ``delete`` (id)."""

    op: str
    id: str
    vector: np.ndarray | None = None
    labels: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    bands: dict[str, np.ndarray] | None = None

    def payload(self) -> bytes:
        """The record's payload bytes (JSON header + vector bytes + bands as safetensors)."""
        blobs: list[bytes] = []
        head: dict[str, Any] = {"op": self.op, "id": self.id}
        if self.op == "add":
            if self.vector is None:
                raise JournalError(f"add of {self.id!r} has no vector")
            vec = np.ascontiguousarray(self.vector)
            blobs.append(vec.tobytes())
            head.update(labels=list(self.labels), meta=self.meta, dtype=vec.dtype.str, shape=list(vec.shape))
            if self.bands is not None:
                blobs.append(encode_value({b: np.ascontiguousarray(a) for b, a in self.bands.items()}))
            head["blobs"] = [len(b) for b in blobs]
        j = json.dumps(head, separators=(",", ":")).encode()
        return struct.pack("<I", len(j)) + j + b"".join(blobs)

    @classmethod
    def from_payload(cls, data: bytes, where: str) -> Record:
        """Decode a payload whose checksum has been verified."""
        try:
            (hl,) = struct.unpack_from("<I", data)
            head = json.loads(data[4:4 + hl])
            off = 4 + hl
            if head["op"] == "delete":
                return cls("delete", str(head["id"]))
            if head["op"] != "add":
                raise ValueError(f"unknown op {head['op']!r}")
            sizes = [int(s) for s in head["blobs"]]
            vec = np.frombuffer(data[off:off + sizes[0]], dtype=np.dtype(head["dtype"])).reshape(head["shape"])
            off += sizes[0]
            bands = decode_value(data[off:off + sizes[1]], str(head["id"])) if len(sizes) > 1 else None
            return cls("add", str(head["id"]), vec.copy(), [str(x) for x in head["labels"]], dict(head["meta"]),
                       bands)
        except (ValueError, KeyError, TypeError, IndexError, struct.error) as e:
            raise JournalError(f"{where}: record with a valid checksum does not decode ({e})") from None


def frame(rec: Record) -> bytes:
    """The bytes of one record as appended to the file."""
    p = rec.payload()
    if len(p) > MAX_RECORD:
        raise JournalError(f"record for {rec.id!r} is {len(p)} bytes, more than the limit of {MAX_RECORD}")
    return FRAME.pack(MAGIC, len(p), zlib.crc32(p)) + p


def scan(path: Path) -> tuple[list[Record], int, int]:
    """Read a journal: (complete records in order, byte offset where they end, file size).

    Bytes after the end offset are an incomplete record from an interrupted append (torn tail). A record that
    fails its checksum or framing with more data after it raises :class:`JournalError`.
    """
    data = path.read_bytes()
    size = len(data)
    if size < len(HEADER):
        if HEADER.startswith(data):  # a journal created by a process killed before its header was synced
            return [], 0, size
        raise JournalError(f"{path}: not an rsir journal (bad header)")
    if not data.startswith(HEADER):
        raise JournalError(f"{path}: not an rsir journal (bad header)")
    off = len(HEADER)
    records: list[Record] = []
    while off < size:
        if size - off < FRAME.size:
            break  # torn frame at the end
        magic, length, crc = FRAME.unpack_from(data, off)
        end = off + FRAME.size + length
        if magic != MAGIC or length > MAX_RECORD:
            if _later_record(data, off + 1):
                raise JournalError(f"{path}: damaged record frame at byte {off} and complete records follow it: "
                                   "the journal is damaged")
            break
        if end > size:
            break  # torn payload at the end
        payload = data[off + FRAME.size:end]
        if zlib.crc32(payload) != crc:
            if end < size and _later_record(data, end):
                raise JournalError(f"{path}: record at byte {off} fails its checksum and complete records follow "
                                   "it: the journal is damaged")
            break
        records.append(Record.from_payload(payload, f"{path} at byte {off}"))
        off = end
    return records, off, size


def _later_record(data: bytes, start: int) -> bool:
    """True when a complete, checksummed record starts somewhere at or after ``start``."""
    i = data.find(MAGIC, start)
    while i >= 0:
        if len(data) - i >= FRAME.size:
            _m, length, crc = FRAME.unpack_from(data, i)
            end = i + FRAME.size + length
            if length <= MAX_RECORD and end <= len(data) and zlib.crc32(data[i + FRAME.size:end]) == crc:
                return True
        i = data.find(MAGIC, i + 1)
    return False


def live_records(records: list[Record], base_ids: set[str]) -> list[Record]:
    """The fewest records that reproduce the state ``records`` leave on top of an index holding ``base_ids``:
    one delete per base item deleted at some point, then the latest add of each id still present, in the order
    of those adds (so positions, and with them tie order, stay the same)."""
    deletes: dict[str, Record] = {}
    adds: dict[str, Record] = {}
    for r in records:
        adds.pop(r.id, None)  # dict order becomes the order of each id's latest add
        if r.op == "add":
            adds[r.id] = r
        elif r.id in base_ids:
            deletes.setdefault(r.id, r)
    return list(deletes.values()) + list(adds.values())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """An open journal for appending (one writer per file, enforced with ``flock``)."""

    def __init__(self, path: Path, f: BinaryIO) -> None:
        self.path = path
        self._f = f
        self.records_written = 0

    @classmethod
    def open_writer(cls, index_dir: str | Path) -> tuple[Journal, list[Record]]:
        """Open (or create) ``INDEX/journal.wal`` for appending: take the lock, truncate a torn tail, return the
        journal and its complete records."""
        path = Path(index_dir) / JOURNAL_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        f = os.fdopen(fd, "r+b", buffering=0)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise JournalError(f"{path}: another process is writing this journal (a second rsir serve with a token "
                               "or rsir add on the same index?)") from None
        try:
            records, end, size = scan(path)
            if end == 0:  # new (or header never synced): write the header
                f.truncate(0)
                f.write(HEADER)
                os.fsync(f.fileno())
                _fsync_dir(path.parent)
            elif end < size:  # an append interrupted by a crash: it was never acknowledged
                f.truncate(end)
                os.fsync(f.fileno())
            f.seek(0, os.SEEK_END)
        except BaseException:
            f.close()
            raise
        return cls(path, f), records

    def append(self, rec: Record) -> None:
        """Write one record and fsync: when this returns the record survives a crash."""
        data = frame(rec)
        pos = self._f.seek(0, os.SEEK_END)
        try:
            self._f.write(data)
            os.fsync(self._f.fileno())
        except OSError as e:
            # leave no partial record behind this process's later appends
            self._f.truncate(pos)
            raise JournalError(f"{self.path}: cannot write the journal ({e.strerror or e})") from None
        self.records_written += 1

    def compact(self, live: list[Record]) -> None:
        """Rewrite the journal as ``live`` atomically (hidden sibling, fsync, rename, fsync the directory)."""
        tmp = partial_sibling(self.path, "tmp")
        with open(tmp, "wb") as out:
            out.write(HEADER)
            for r in live:
                out.write(frame(r))
            out.flush()
            os.fsync(out.fileno())
        fd = os.open(tmp, os.O_RDWR)
        nf = os.fdopen(fd, "r+b", buffering=0)
        fcntl.flock(nf.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else can know this file yet
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        old, self._f = self._f, nf
        self._f.seek(0, os.SEEK_END)
        old.close()

    def size(self) -> int:
        """Bytes in the journal file."""
        return int(os.fstat(self._f.fileno()).st_size)

    def close(self) -> None:
        """Release the lock and close the file."""
        self._f.close()


def read_records(index_dir: str | Path) -> list[Record]:
    """Complete records of ``INDEX/journal.wal`` (none when there is no journal), for read-only openers."""
    path = Path(index_dir) / JOURNAL_NAME
    if not path.is_file():
        return []
    return scan(path)[0]
