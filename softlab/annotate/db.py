"""SQLite store of annotation answers.

One row per accepted answer::

    id | annotator | item | label | second_label | confidence | response_ms | timestamp |
    is_attention_check | attempt | submission_id

- ``response_ms``: time from the image being shown to the answer being sent, in milliseconds,
  measured by the client (non-negative).
- ``timestamp``: server time the answer was stored, ISO 8601 UTC with milliseconds.
- ``attempt``: 1 for an annotator's first answer to an item, 2 for the second (only with
  re-annotation), ...
- ``submission_id``: an optional client-chosen id; sending the same submission again (e.g. a
  retry after a lost response) returns the stored row instead of storing it twice.

Privacy: the database file is created with mode 0600 (SQLite gives its ``-wal``/``-shm``
files the same mode), like the study's other files; an existing one readable by others is
tightened to 0600 when opened.

Safety: WAL journal, ``synchronous=FULL`` (a committed answer survives a crash or power loss),
one ``BEGIN IMMEDIATE`` transaction per answer (the check and the insert are atomic), and a
UNIQUE(annotator, item) constraint unless the study allows re-annotation.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1"
BUSY_TIMEOUT_MS = 30_000
COLUMNS = (
    "id",
    "annotator",
    "item",
    "label",
    "second_label",
    "confidence",
    "response_ms",
    "timestamp",
    "is_attention_check",
    "attempt",
    "submission_id",
)


class DuplicateAnswerError(ValueError):
    """The annotator already answered this item and the study does not allow re-annotation."""


class SubmissionConflictError(ValueError):
    """A ``submission_id`` was reused for a different answer."""


class DatabaseMismatchError(ValueError):
    """The database file belongs to another study or uses other rules."""


class AnnotationDBError(ValueError):
    """The answer database file is not a readable SQLite database (one line, names the file)."""


@dataclass(frozen=True)
class Answer:
    """One answer as submitted (before the server adds timestamp and attempt)."""

    annotator: str
    item: int
    label: int
    second_label: int | None
    confidence: int | None
    response_ms: float
    is_attention_check: bool
    submission_id: str | None = None


@dataclass(frozen=True)
class StoredAnswer:
    """A stored answer (a database row)."""

    id: int
    annotator: str
    item: int
    label: int
    second_label: int | None
    confidence: int | None
    response_ms: float
    timestamp: str
    is_attention_check: bool
    attempt: int
    submission_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(r: sqlite3.Row | tuple[Any, ...]) -> StoredAnswer:
    (id_, annotator, item, label, second, conf, rms, ts, att, attempt, sub) = tuple(r)
    return StoredAnswer(
        int(id_),
        str(annotator),
        int(item),
        int(label),
        None if second is None else int(second),
        None if conf is None else int(conf),
        float(rms),
        str(ts),
        bool(att),
        int(attempt),
        None if sub is None else str(sub),
    )


def _schema(allow_reannotation: bool) -> str:
    once = "" if allow_reannotation else ",\n    UNIQUE (annotator, item)"
    return f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL CHECK (length(annotator) > 0),
    item INTEGER NOT NULL CHECK (item >= 0),
    label INTEGER NOT NULL CHECK (label >= 0),
    second_label INTEGER CHECK (second_label IS NULL OR second_label >= 0),
    confidence INTEGER,
    response_ms REAL NOT NULL CHECK (response_ms >= 0),
    timestamp TEXT NOT NULL,
    is_attention_check INTEGER NOT NULL CHECK (is_attention_check IN (0, 1)),
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    submission_id TEXT UNIQUE,
    UNIQUE (annotator, item, attempt){once}
);
CREATE INDEX IF NOT EXISTS answers_by_annotator ON answers (annotator, item);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AnnotationDB:
    """The answers of one study in an SQLite file (safe for threads and processes).

    Connections are kept open (closing the last connection of a WAL database checkpoints it,
    which costs several fsyncs): one writer connection, used under a lock that serialises the
    writers of this process, and one reader connection per thread. Other processes wait up
    to ``BUSY_TIMEOUT_MS`` for the write lock. :meth:`close` closes them all (use the object
    as a context manager); a later call reopens them.
    """

    def __init__(self, path: str | os.PathLike[str], study_id: str, allow_reannotation: bool) -> None:
        self.path = Path(path)
        self.study_id = study_id
        self.allow_reannotation = bool(allow_reannotation)
        self._write_lock = threading.Lock()
        self._registry_lock = threading.Lock()
        self._local = threading.local()
        self._open_connections: list[sqlite3.Connection] = []
        self._generation = 0
        self._writer: sqlite3.Connection | None = None
        try:
            self._init()
        except sqlite3.DatabaseError as exc:  # not a database, damaged pages, ...: one line, not a traceback
            self.close()
            raise AnnotationDBError(
                f"{self.path}: the answer database cannot be read ({exc}); restore it from a backup "
                "(the study's answers are in it: it is never replaced automatically)"
            ) from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> AnnotationDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _new_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")
        with self._registry_lock:
            self._open_connections.append(conn)
        return conn

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's reader connection."""
        cached = getattr(self._local, "conn", None)
        if cached is None or cached[0] != self._generation:
            self._local.conn = (self._generation, self._new_connection())
        yield self._local.conn[1]

    def _writer_connection(self) -> sqlite3.Connection:
        """The writer connection; call with ``_write_lock`` held."""
        if self._writer is None:
            self._writer = self._new_connection()
        return self._writer

    def close(self) -> None:
        """Close every connection (the last close checkpoints the WAL into the database file)."""
        with self._write_lock, self._registry_lock:
            for conn in self._open_connections:
                conn.close()
            self._open_connections.clear()
            self._writer = None
            self._generation += 1

    def _create_private(self) -> None:
        """Create the database file with mode 0600 before SQLite opens it (SQLite would use 0644)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = os.stat(self.path).st_mode & 0o777
            if mode & 0o077:
                try:
                    os.chmod(self.path, mode & 0o700)
                except PermissionError:  # not ours to change: leave it as it is
                    pass
            return
        os.close(fd)

    def _init(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create_private()
        with self._write_lock:
            conn = self._writer_connection()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise DatabaseMismatchError(f"{self.path}: could not switch to WAL journal mode (got {mode!r})")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _schema(self.allow_reannotation).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                expected = {
                    "schema_version": SCHEMA_VERSION,
                    "study_id": self.study_id,
                    "allow_reannotation": str(int(self.allow_reannotation)),
                }
                if not meta:
                    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(expected.items()))
                else:
                    for key, value in expected.items():
                        if meta.get(key) != value:
                            raise DatabaseMismatchError(
                                f"{self.path}: {key} is {meta.get(key)!r} in the database but {value!r} in the study; "
                                "the database belongs to another study or other rules"
                            )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ writes

    def add(self, answer: Answer) -> tuple[StoredAnswer, bool]:
        """Store ``answer`` in one transaction; return (stored row, True if it was already stored).

        Raises :class:`DuplicateAnswerError` when the annotator already answered the item and
        re-annotation is off, :class:`SubmissionConflictError` when ``submission_id`` names a
        different stored answer. Nothing is written when it raises.
        """
        with self._write_lock:
            conn = self._writer_connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored, repeated = self._add(conn, answer)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return stored, repeated

    def _add(self, conn: sqlite3.Connection, a: Answer) -> tuple[StoredAnswer, bool]:
        cols = ", ".join(COLUMNS)
        if a.submission_id is not None:
            r = conn.execute(f"SELECT {cols} FROM answers WHERE submission_id = ?", (a.submission_id,)).fetchone()
            if r is not None:
                s = _row(r)
                same = (s.annotator, s.item, s.label, s.second_label, s.confidence) == (
                    a.annotator,
                    a.item,
                    a.label,
                    a.second_label,
                    a.confidence,
                )
                if not same:
                    raise SubmissionConflictError(
                        f"submission_id {a.submission_id!r} was already used for a different answer"
                    )
                return s, True
        (n_before,) = conn.execute(
            "SELECT COUNT(*) FROM answers WHERE annotator = ? AND item = ?", (a.annotator, a.item)
        ).fetchone()
        if n_before and not self.allow_reannotation:
            raise DuplicateAnswerError(
                f"annotator {a.annotator!r} already answered item {a.item}; this study does not allow re-annotation"
            )
        try:
            cur = conn.execute(
                "INSERT INTO answers (annotator, item, label, second_label, confidence, response_ms, timestamp, "
                "is_attention_check, attempt, submission_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    a.annotator,
                    a.item,
                    a.label,
                    a.second_label,
                    a.confidence,
                    float(a.response_ms),
                    utc_now(),
                    int(a.is_attention_check),
                    int(n_before) + 1,
                    a.submission_id,
                ),
            )
        except sqlite3.IntegrityError as exc:  # safety net; the checks above should have caught it
            raise DuplicateAnswerError(f"answer rejected by the database constraints: {exc}") from exc
        r = conn.execute(f"SELECT {cols} FROM answers WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _row(r), False

    # ------------------------------------------------------------------ reads

    def answer_counts(self, annotator: str) -> dict[int, int]:
        """Item → number of stored answers by ``annotator``."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT item, COUNT(*) FROM answers WHERE annotator = ? GROUP BY item", (annotator,)
            ).fetchall()
        return {int(i): int(n) for i, n in rows}

    def answers(self) -> list[StoredAnswer]:
        """Every stored answer, ordered by (item, annotator, attempt)."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM answers ORDER BY item, annotator, attempt"
            ).fetchall()
        return [_row(r) for r in rows]

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def annotators(self) -> list[str]:
        with self._connect() as conn:
            return [str(r[0]) for r in conn.execute("SELECT DISTINCT annotator FROM answers ORDER BY annotator")]

    def integrity_ok(self) -> bool:
        with self._connect() as conn:
            return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
