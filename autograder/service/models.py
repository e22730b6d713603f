"""The service's tables (SQLAlchemy 2.0 ORM). The schema itself is created and changed only by the
migrations in ``migrations/`` (Alembic); ``tests/test_service_api.py`` checks that the two agree.

    Student         a person: name, confirmed e-mail, API token (hashed), admin or not
    LoginLink       a one-time e-mail link (sign-up confirmation or log-in), stored hashed
    Session         a browser session (cookie = its random id, signed), with its CSRF token
    Submission      one uploaded notebook for one lesson: queued -> grading -> graded | error
    Credential      an issued certificate: the signed JSON, its short id, its status-list index
    IssuerKey       the signing keys (public part; the private key is a 0600 file), retired or not
    StatusList      the revocation bitstring (and the last signed status list credential)
    AuditEvent      who issued, revoked, rotated what and when
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class UTCDateTime(TypeDecorator):
    """A UTC date-time that comes back with its time zone from every database (SQLite keeps
    none), so that comparisons with ``utcnow()`` never mix naive and aware values."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("a naive date-time was stored: use utcnow()")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Student(Base):
    __tablename__ = "students"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    submissions: Mapped[list[Submission]] = relationship(back_populates="student")


class LoginLink(Base):
    __tablename__ = "login_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))          # "confirm" | "login"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Session(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)   # sha256 of the cookie's id
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Submission(Base):
    __tablename__ = "submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    lesson: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    score: Mapped[float | None] = mapped_column(Float)
    max_score: Mapped[float | None] = mapped_column(Float)
    report: Mapped[str | None] = mapped_column(Text)          # the grader's JSON report
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    graded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    student: Mapped[Student] = relationship(back_populates="submissions")


class Credential(Base):
    __tablename__ = "credentials"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)          # urn:uuid:...
    short_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"), unique=True)
    status_index: Mapped[int] = mapped_column(Integer, unique=True)
    document: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    student: Mapped[Student] = relationship()


class IssuerKey(Base):
    __tablename__ = "issuer_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)           # key-1, key-2, ...
    public_key: Mapped[str] = mapped_column(String(128))                   # Multikey (z6Mk...)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StatusList(Base):
    __tablename__ = "status_lists"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bits: Mapped[bytes] = mapped_column(LargeBinary)
    signed: Mapped[str | None] = mapped_column(Text)           # the published credential (JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(254))            # an e-mail address or "service"
    action: Mapped[str] = mapped_column(String(32))            # issued | revoked | key-rotated ...
    subject: Mapped[str] = mapped_column(String(254))
    detail: Mapped[str] = mapped_column(Text, default="")
