"""The record of issued credentials: a table beside nbgrader's, in the same gradebook.db file.

One row per student (``student_id`` is the primary key), so running ``certify`` twice issues
nothing new: a student who already has a credential - valid or revoked - is skipped. A revoked
credential is never silently re-issued; an instructor who wants that deletes the row on purpose.
nbgrader ignores tables it does not own (this one is prefixed ``inferlab_``).

Each row also records where the credential's revocation bit is (``status_index`` in the issuer's
status list, ``status.json`` beside its keys) and its random ``short_id`` (the public address
``<base>/c/<short_id>``). ``revocation_reason`` is a private note for the instructor: it is never
published - the status list carries one bit per credential, nothing more.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TABLE = "inferlab_credentials"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    student_id        TEXT PRIMARY KEY,
    credential_id     TEXT NOT NULL UNIQUE,
    issuer            TEXT NOT NULL,
    issued_at         TEXT NOT NULL,
    credential_json   TEXT NOT NULL,
    revoked_at        TEXT,
    revocation_reason TEXT,
    status_index      INTEGER,
    short_id          TEXT
)"""
_ADDED = {"status_index": "INTEGER", "short_id": "TEXT"}   # columns newer than the first table


@dataclass
class Issued:
    student_id: str
    credential_id: str
    issuer: str
    issued_at: str
    credential: dict
    revoked_at: str | None
    revocation_reason: str | None
    status_index: int | None = None
    short_id: str | None = None


@contextmanager
def connect(db_path: Path):
    """A short-lived connection (nbgrader may hold its own); commits on success."""
    con = sqlite3.connect(str(db_path), timeout=30)
    try:
        con.execute(SCHEMA)
        have = {row[1] for row in con.execute(f"PRAGMA table_info({TABLE})")}
        for column, kind in _ADDED.items():
            if column not in have:
                con.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {kind}")
        yield con
        con.commit()
    finally:
        con.close()


def _row(row) -> Issued | None:
    if row is None:
        return None
    return Issued(row[0], row[1], row[2], row[3], json.loads(row[4]), *row[5:])


_COLUMNS = ("student_id, credential_id, issuer, issued_at, credential_json, revoked_at, "
            "revocation_reason, status_index, short_id")


def for_student(db_path: Path, student_id: str) -> Issued | None:
    with connect(db_path) as con:
        return _row(con.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE student_id = ?",
                                (student_id,)).fetchone())


def by_id(db_path: Path, credential_id: str) -> Issued | None:
    with connect(db_path) as con:
        return _row(con.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE credential_id = ?",
                                (credential_id,)).fetchone())


def record(db_path: Path, student_id: str, credential: dict, short_id: str | None = None) -> None:
    """Store a newly issued credential (fails if the student already has one)."""
    status = credential.get("credentialStatus") or {}
    index = int(status["statusListIndex"]) if "statusListIndex" in status else None
    with connect(db_path) as con:
        con.execute(f"INSERT INTO {TABLE} (student_id, credential_id, issuer, issued_at, "
                    "credential_json, status_index, short_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (student_id, credential["id"], credential["issuer"]["id"],
                     credential["validFrom"], json.dumps(credential, ensure_ascii=False),
                     index, short_id))


def set_short_id(db_path: Path, credential_id: str, short_id: str) -> None:
    with connect(db_path) as con:
        con.execute(f"UPDATE {TABLE} SET short_id = ? WHERE credential_id = ?",
                    (short_id, credential_id))


def mark_revoked(db_path: Path, credential_id: str, when: str, note: str = "") -> bool:
    """Flag a credential as revoked (``note``: private, never published); False when this
    gradebook never issued it."""
    with connect(db_path) as con:
        cur = con.execute(f"UPDATE {TABLE} SET revoked_at = ?, revocation_reason = ? "
                          "WHERE credential_id = ?", (when, note, credential_id))
        return cur.rowcount > 0


def all_issued(db_path: Path) -> list[Issued]:
    with connect(db_path) as con:
        return [_row(r) for r in con.execute(f"SELECT {_COLUMNS} FROM {TABLE} ORDER BY issued_at")]
