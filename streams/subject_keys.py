"""Crypto-shredding: a data key per subject, the master key that wraps them, and the
personal data codec that uses them (docs/architecture.md, "Personal data and erasure").

- :class:`MasterKeys`: the master key (``MEMSTREAM_MASTER_KEY``, or the file
  ``MEMSTREAM_MASTER_KEY_FILE``, or ``<MEMSTREAM_HOME>/master.key`` created on first use)
  and, during a rotation, the keys being retired (``MEMSTREAM_PREVIOUS_MASTER_KEYS``).
  It wraps and unwraps keys with AES-256-GCM; a KMS plugs in by doing exactly these two
  things (``wrap``/``unwrap`` with its Encrypt/Decrypt, ``id`` its key version).
- :class:`SubjectKeyStore`: the keys in PostgreSQL (``memstream.subject_keys``,
  ``memstream.deployment_keys``, migration 0008), held in this process's memory. It is
  synchronous because the codec runs inside pydantic validators. The hot path is a dict
  lookup. The projection runtime loads a batch's keys in one query before decoding it
  (:func:`prefetch_keys`), and ``EventLog`` creates or loads the keys of what it is about
  to seal in a worker thread (:func:`prepare_keys`); any other miss is one short query on
  the store's own connection, which in an async service blocks the event loop for that
  query (about a millisecond on a local database). Every ``MEMSTREAM_KEY_CACHE_S``
  seconds (default 5) one query reads the keys destroyed since the last one, so a process
  stops using a destroyed key within that bound.
- :class:`SubjectKeyCodec`: the :class:`schemas.codec.SubjectSealingCodec` on top. A
  stored value is ``enc:v1:<key id>:<base64 of nonce + ciphertext>`` (AES-256-GCM, the
  key id as associated data); anything else is plain text from before encryption and
  decodes as itself. It is a :class:`schemas.codec.PeriodSealingCodec` too: a
  transcript is ``enc:p1:<period key id>:<subject key id>:<base64>``, sealed with a key
  derived from both the subject's key and the key of the tenant's UTC day the call began
  in (:func:`period_owner`: ``transcripts/<day>``), so destroying either makes it
  unreadable: erasure destroys the one, transcript retention (``services/retention.py``)
  the other. A memory's content and vector are sealed the same way with a period key of
  the second family, ``memories/<day>`` (the day the memory was first said), which memory
  retention destroys. Both families are the same kind of row, made, cached, rotated,
  destroyed and polled alike; each is refused creation for a day already past the
  tenant's retention of that family.
- :func:`install_personal_codec` (each process, from its settings, once),
  :func:`carry_out_erasure` / :func:`destroy_subject_key` (erasure),
  :func:`latest_erasures` (what ``EventLog`` refuses to append),
  :func:`rotate_master_key`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import AsyncConnection

from schemas import (
    ERASED,
    Event,
    PersonalDataCodec,
    UserForgotten,
    get_personal_codec,
    set_personal_codec,
)
from schemas.codec import MEMORY_PERIODS, TRANSCRIPT_PERIODS
from streams import database
from streams.exceptions import ConfigurationError, DatabaseUnavailable
from streams.settings import StreamsSettings

__all__ = [
    "ERASURES",
    "PSEUDONYMS",
    "SEALED",
    "SEALED_TRANSCRIPT",
    "MasterKey",
    "MasterKeys",
    "SubjectKeyCodec",
    "SubjectKeyStore",
    "carry_out_erasure",
    "destroy_periods_before",
    "destroy_subject_key",
    "install_personal_codec",
    "keys_created_ahead",
    "latest_erasures",
    "load_master_keys",
    "next_period",
    "period_owner",
    "prefetch_keys",
    "prepare_keys",
    "rotate_master_key",
]

logger = logging.getLogger(__name__)

#: The prefix of every value this codec stores (v1: AES-256-GCM, 12-byte nonce).
SEALED = "enc:v1:"
_SEALED_LENGTH = len(SEALED)
#: The prefix of a transcript sealed with its subject's key and its period's.
SEALED_TRANSCRIPT = "enc:p1:"
#: A period key's owner (its row's `subject_hash`) is ``<family>/<UTC day>``; each family
#: is destroyed by the tenant's retention in this column of memstream.tenants.
_RETENTION_COLUMNS = {
    TRANSCRIPT_PERIODS: "transcript_retention",
    MEMORY_PERIODS: "memory_retention",
}
#: Deployment keys: the one that keys subjects' pseudonyms, and the one that seals the
#: subject of a user.forgotten (the record of who was forgotten outlives their key).
PSEUDONYMS = "pseudonyms"
ERASURES = "erasures"

MASTER_KEY_FILE = "master.key"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_PSEUDONYM_HEX = 32  # 128 bits of HMAC-SHA256
# Caches are cleared when they reach this many entries (a key is ~200 bytes).
_CACHE_LIMIT = 200_000
# Destructions are polled with this overlap: a destroying transaction that began before
# the previous poll and committed after it is still seen.
_POLL_OVERLAP = timedelta(minutes=1)


# -- the master key ----------------------------------------------------------------------


class MasterKey:
    """A 256-bit key that wraps data keys (AES-256-GCM); ``id`` names it in the database."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != _KEY_BYTES:
            raise ConfigurationError(f"a master key is {_KEY_BYTES} bytes, got {len(raw)}")
        # A fingerprint, not the key: which configured key opens a wrapped one.
        self.id = hashlib.sha256(b"memstream master key id\x00" + raw).hexdigest()[:16]
        self._aead = AESGCM(raw)

    def wrap(self, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], context)
        except InvalidTag:
            raise ConfigurationError(
                f"master key {self.id} does not open a key it is recorded to have wrapped"
            ) from None

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r})"


@dataclass(frozen=True)
class MasterKeys:
    """The master key new keys are wrapped with, and those a rotation is retiring."""

    current: MasterKey
    previous: tuple[MasterKey, ...] = ()

    def by_id(self, key_id: str) -> MasterKey:
        for key in (self.current, *self.previous):
            if key.id == key_id:
                return key
        raise ConfigurationError(
            f"a key in the database was wrapped by master key {key_id}, which is not"
            f" configured (this process has {self.current.id}): set MEMSTREAM_MASTER_KEY"
            " to it, or keep it in MEMSTREAM_PREVIOUS_MASTER_KEYS until `memstream"
            " encryption rotate-master` has re-wrapped every key"
        )


def load_master_keys(settings: StreamsSettings) -> MasterKeys:
    """The master keys of `settings` (the default key file is created if missing)."""
    if settings.master_key:
        current = _parse_key(settings.master_key, "MEMSTREAM_MASTER_KEY")
    else:
        path = settings.master_key_file or settings.home / MASTER_KEY_FILE
        current = _parse_key(_read_or_create(path), str(path))
    previous = tuple(
        _parse_key(text, "MEMSTREAM_PREVIOUS_MASTER_KEYS")
        for text in (settings.previous_master_keys or "").split(",")
        if text.strip()
    )
    return MasterKeys(current, previous)


def _parse_key(text: str, where: str) -> MasterKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise ConfigurationError(f"{where}: a master key is base64 (of 32 bytes)") from None
    try:
        return MasterKey(raw)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _read_or_create(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(base64.b64encode(os.urandom(_KEY_BYTES)).decode() + "\n")
    try:
        # A hard link never replaces: of two processes creating it, one key wins.
        os.link(draft, path)
        logger.warning(
            "created a new master key in %s: every subject's personal data depends on it;"
            " keep a copy apart from the database (docs/operations.md)",
            path,
        )
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text(encoding="ascii")


# -- the key store -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    tenant: str
    subject_hash: str  # or a period key's owner (period_owner)
    aead: AESGCM | None  # None: destroyed
    secret: bytes | None = None  # the key itself (a transcript's key is derived from two)


@dataclass(frozen=True, slots=True)
class _Subject:
    live: _Key | None  # the key new values are sealed with (None: none yet, or destroyed)
    erased_at: datetime | None  # the latest erasure (None: never erased)


def period_owner(began: datetime, family: str = TRANSCRIPT_PERIODS) -> str:
    """The owner of the period key of `family` (``transcripts``, ``memories``) for what
    began at `began`: ``<family>/<UTC day>``."""
    return f"{family}/{began.astimezone(UTC).date().isoformat()}"


def next_period(owner: str) -> str:
    """The owner of the period after `owner` (the next UTC day, the same family)."""
    family, _, day = owner.partition("/")
    return f"{family}/{(datetime.fromisoformat(day).date() + timedelta(days=1)).isoformat()}"


def period_family(owner: str) -> str | None:
    """The family of a period key's owner; None for a subject's key (a hash has no '/')."""
    family, slash, _ = owner.partition("/")
    return family if slash and family in _RETENTION_COLUMNS else None


def _wrap_context(tenant: str, subject_hash: str) -> bytes:
    # Binds a wrapped key to its subject: it cannot be moved to another's row.
    return f"memstream subject key\x00{tenant}\x00{subject_hash}".encode()


def _deployment_context(name: str) -> bytes:
    return f"memstream deployment key\x00{name}".encode()


_SUBJECT_COLUMNS = "key_id, tenant, subject_hash, version, master_key_id, wrapped_key, erased_at"
_LOAD_SUBJECT_SQL = (
    f"SELECT {_SUBJECT_COLUMNS} FROM memstream.subject_keys WHERE tenant = %s AND subject_hash = %s"
)
_LOAD_BY_KID_SQL = (
    f"SELECT {_SUBJECT_COLUMNS} FROM memstream.subject_keys WHERE (tenant, subject_hash) ="
    " (SELECT tenant, subject_hash FROM memstream.subject_keys WHERE key_id = %s)"
)
_LOAD_KIDS_SQL = (
    f"SELECT {_SUBJECT_COLUMNS} FROM memstream.subject_keys WHERE (tenant, subject_hash) IN"
    " (SELECT tenant, subject_hash FROM memstream.subject_keys WHERE key_id = ANY(%s))"
)
_LOAD_SUBJECTS_SQL = (
    f"SELECT {_SUBJECT_COLUMNS} FROM memstream.subject_keys WHERE (tenant, subject_hash) IN"
    " (SELECT * FROM unnest(%s::text[], %s::text[]))"
)
# A subject's next key, in one statement (one round trip, one commit): its version after
# every earlier one, and the subject's latest erasure returned with it. Nothing is inserted
# when the subject has a live key already (a concurrent creator won the unique index).
_CREATE_SQL = """
WITH prior AS (
    SELECT max(version) AS version, max(erased_at) AS erased_at FROM memstream.subject_keys
     WHERE tenant = %(tenant)s AND subject_hash = %(subject_hash)s
)
INSERT INTO memstream.subject_keys (tenant, subject_hash, version, master_key_id, wrapped_key)
SELECT %(tenant)s, %(subject_hash)s, COALESCE(prior.version, 0) + 1, %(master)s, %(wrapped)s
  FROM prior
ON CONFLICT DO NOTHING
RETURNING key_id, version, (SELECT erased_at FROM prior)
"""
# A tenant's key of one period, unless the period is past the tenant's retention of its
# family already (a call that ends, or is redelivered, after its day expired; a memory
# extracted again from an old call): then nothing is inserted, and the value is stored as
# erased. A period key is never replaced: a destroyed one stays the period's (version 1,
# the unique index). {column}: the family's retention (_RETENTION_COLUMNS).
_CREATE_PERIOD_SQL = """
INSERT INTO memstream.subject_keys (tenant, subject_hash, version, master_key_id, wrapped_key)
SELECT %(tenant)s, %(subject_hash)s, 1, %(master)s, %(wrapped)s
 WHERE NOT EXISTS (
     SELECT 1 FROM memstream.tenants t
      WHERE t.tenant = %(tenant)s AND %(ends)s + t.{column} <= now())
ON CONFLICT DO NOTHING
RETURNING key_id, version, erased_at
"""
# One row even when nothing was destroyed: the database's time is the next poll's start.
_POLL_SQL = (
    "SELECT n.now, k.key_id, k.tenant, k.subject_hash, k.erased_at"
    " FROM (SELECT now() AS now) n"
    " LEFT JOIN memstream.subject_keys k ON k.destroyed_at >= %s"
)
_DEPLOYMENT_SQL = "SELECT name, master_key_id, wrapped_key FROM memstream.deployment_keys"
_CREATE_DEPLOYMENT_SQL = (
    "INSERT INTO memstream.deployment_keys (name, master_key_id, wrapped_key)"
    " VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING"
)

# Erasure: destroy the subject's live key, or leave a tombstone when it has none, unless
# an erasure at or after this one was carried out already (replays are no-ops, and a key
# the subject got after that erasure is not destroyed by an old user.forgotten).
_DESTROY_SQL = """
WITH erasure (tenant, subject_hash, erased_at) AS (
    VALUES (%(tenant)s::text, %(subject_hash)s::text,
            COALESCE(%(erased_at)s::timestamptz, now()))
), carried_out AS (
    SELECT 1 FROM memstream.subject_keys k JOIN erasure e USING (tenant, subject_hash)
     WHERE k.erased_at >= e.erased_at
), destroyed AS (
    UPDATE memstream.subject_keys k
       SET wrapped_key = NULL, master_key_id = NULL, destroyed_at = now(),
           erased_at = e.erased_at
      FROM erasure e
     WHERE k.tenant = e.tenant AND k.subject_hash = e.subject_hash
       AND k.destroyed_at IS NULL AND NOT EXISTS (SELECT 1 FROM carried_out)
    RETURNING k.key_id
), tombstone AS (
    INSERT INTO memstream.subject_keys (tenant, subject_hash, version, destroyed_at, erased_at)
    SELECT e.tenant, e.subject_hash,
           COALESCE((SELECT max(version) FROM memstream.subject_keys k
                      WHERE k.tenant = e.tenant AND k.subject_hash = e.subject_hash), 0) + 1,
           now(), e.erased_at
      FROM erasure e
     WHERE NOT EXISTS (SELECT 1 FROM carried_out) AND NOT EXISTS (SELECT 1 FROM destroyed)
    RETURNING key_id
)
SELECT (SELECT count(*) FROM destroyed) + (SELECT count(*) FROM tombstone)
"""
_ERASURE_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
# Retention: a family's period keys of the days before a boundary (period owners sort as
# their days do: <family>/YYYY-MM-DD).
_DESTROY_PERIODS_SQL = """
UPDATE memstream.subject_keys
   SET wrapped_key = NULL, master_key_id = NULL, destroyed_at = now(), erased_at = now()
 WHERE tenant = %(tenant)s AND subject_hash LIKE %(family)s || '/%%'
   AND subject_hash < %(owner)s AND destroyed_at IS NULL
RETURNING subject_hash
"""


class SubjectKeyStore:
    """Subjects' data keys and the deployment keys, cached in memory (see the module
    docstring for what a miss costs and how long a destroyed key stays in use)."""

    def __init__(self, database_url: str, master: MasterKeys, cache_s: float = 5.0) -> None:
        self.database_url = database_url
        self.master = master
        self.cache_s = cache_s
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._keys: dict[str, _Key] = {}
        self._subjects: dict[tuple[str, str], _Subject] = {}
        self._hashes: dict[str, str] = {}
        self._deployment: dict[str, bytes] = {}
        self._pseudonym_key: Any = None  # an HMAC object, copied per subject
        self._erasures: AESGCM | None = None
        self.polled_at = 0.0
        self._poll_since: datetime | None = None

    # -- what the codec asks ----------------------------------------------------------------

    def subject_hash(self, subject: str) -> str:
        """The subject's keyed hash (HMAC-SHA256, 128 bits as hex): its pseudonym."""
        found = self._hashes.get(subject)
        if found is None:
            keyed = self._pseudonym_key
            if keyed is None:
                keyed = self._pseudonym_key = hmac.new(
                    self.deployment_key(PSEUDONYMS), digestmod=hashlib.sha256
                )
            mac = keyed.copy()
            mac.update(subject.encode())
            found = mac.hexdigest()[:_PSEUDONYM_HEX]
            if len(self._hashes) >= _CACHE_LIMIT:
                self._hashes.clear()
            self._hashes[subject] = found
        return found

    def subject(self, tenant: str, subject_hash: str) -> _Subject:
        """What is known of a subject: its live key and its latest erasure."""
        self.poll()
        state = self._subjects.get((tenant, subject_hash))
        if state is None:
            with self._lock:
                state = self._load_subject(tenant, subject_hash)
        return state

    def key(self, kid: str) -> _Key:
        """The key named `kid` (raises ValueError when this database has none)."""
        if self.poll_due():
            self.poll()
        key = self._keys.get(kid)
        if key is None:
            if not kid.isdigit():
                raise ValueError(f"{kid!r} is not a subject key id")
            with self._lock:
                self._load(_LOAD_BY_KID_SQL, [int(kid)], None)
                key = self._keys.get(kid)
            if key is None:
                raise ValueError(f"key {kid} is not in this database's memstream.subject_keys")
        return key

    def prefetch(self, kids: Iterable[str], plain: Iterable[str] = ()) -> None:
        """Load the subjects of these keys that are not cached, and the `plain` subjects
        (of records written before encryption) not cached, in one query each: a batch of
        records costs a round trip or two, not one per subject (a rebuild's first pass)."""
        self.poll()
        missing = sorted({int(kid) for kid in kids if kid not in self._keys and kid.isdigit()})
        named = {(s.partition("/")[0], self.subject_hash(s)) for s in plain}
        unknown = sorted(subject for subject in named if subject not in self._subjects)
        if not (missing or unknown):
            return
        with self._lock:
            by_subject: dict[tuple[str, str], list[Any]] = {}
            if missing:
                for row in self._execute(_LOAD_KIDS_SQL, [missing]):
                    by_subject.setdefault((row[1], row[2]), []).append(row)
            if unknown:
                # A subject without any row is known too: it has no key and no erasure.
                by_subject.update({subject: [] for subject in unknown})
                params = [[t for t, _ in unknown], [h for _, h in unknown]]
                for row in self._execute(_LOAD_SUBJECTS_SQL, params):
                    by_subject[(row[1], row[2])].append(row)
            for subject, rows in by_subject.items():
                self._keep(subject, rows)

    def latest_erasures(self, subjects: Iterable[str]) -> dict[str, datetime]:
        """The latest erasure of each of `subjects` that was ever erased (the others are
        left out), as this process knows it; the subjects not cached are loaded in one
        query (call it in a worker thread when `knows` says some are not)."""
        self.poll()
        wanted = {s: (s.partition("/")[0], self.subject_hash(s)) for s in set(subjects)}
        states = {key: state for key in wanted.values() if (state := self._subjects.get(key))}
        missing = sorted(set(wanted.values()) - set(states))
        if missing:
            with self._lock:
                by_subject: dict[tuple[str, str], list[Any]] = {key: [] for key in missing}
                for row in self._execute(
                    _LOAD_SUBJECTS_SQL, [[t for t, _ in missing], [h for _, h in missing]]
                ):
                    by_subject[(row[1], row[2])].append(row)
                for key, rows in by_subject.items():
                    states[key] = self._keep(key, rows)
        return {s: at for s, key in wanted.items() if (at := states[key].erased_at) is not None}

    def knows(self, subject: str) -> bool:
        """Whether what is known of `subject` (its keys, its latest erasure) is cached."""
        return (subject.partition("/")[0], self.subject_hash(subject)) in self._subjects

    def lacks_live_key(self, subject: str) -> bool:
        """Whether sealing for `subject` would need the database (no live key cached)."""
        state = self._subjects.get((subject.partition("/")[0], self.subject_hash(subject)))
        return state is None or state.live is None

    def ensure_keys(self, subjects: Iterable[str]) -> None:
        """Create, or load, the live key of each subject that has none cached: for the new
        ones one insert each, in one transaction (one commit); one query loads those that
        had a key. EventLog calls it in a worker thread before sealing, so the event loop
        never waits on the database."""
        self.poll()
        wanted = sorted(
            {
                (s.partition("/")[0], self.subject_hash(s))
                for s in subjects
                if self.lacks_live_key(s)
            }
        )
        if not wanted:
            return
        with self._lock:
            conn = self._connection()
            made: list[tuple[tuple[str, str], Any, bytes]] = []
            try:
                with conn.transaction() if len(wanted) > 1 else contextlib.nullcontext():
                    for tenant, subject_hash in wanted:
                        raw = AESGCM.generate_key(bit_length=256)
                        row = conn.execute(
                            _CREATE_SQL, self._creation(tenant, subject_hash, raw)
                        ).fetchone()
                        if row is not None:
                            made.append(((tenant, subject_hash), row, raw))
            except psycopg.OperationalError as exc:
                self._disconnect()
                raise DatabaseUnavailable(self.database_url, str(exc).strip()) from exc
            # Committed: the keys are durable before anything sealed with them is sent.
            for (tenant, subject_hash), row, raw in made:
                self._keep_created(tenant, subject_hash, row, raw)
            had = [subject for subject in wanted if subject not in {m[0] for m in made}]
            if had:
                by_subject: dict[tuple[str, str], list[Any]] = {subject: [] for subject in had}
                for row in self._execute(
                    _LOAD_SUBJECTS_SQL, [[t for t, _ in had], [h for _, h in had]]
                ):
                    by_subject[(row[1], row[2])].append(row)
                for subject, rows in by_subject.items():
                    self._keep(subject, rows)

    def live_key(self, tenant: str, subject_hash: str) -> _Key:
        """The key to seal the subject's new values with, created if it has none."""
        self.poll()
        state = self._subjects.get((tenant, subject_hash))
        if state is not None and state.live is not None:
            return state.live
        with self._lock:
            for _ in range(3):
                raw = AESGCM.generate_key(bit_length=256)
                created = self._execute(_CREATE_SQL, self._creation(tenant, subject_hash, raw))
                if created:
                    return self._keep_created(tenant, subject_hash, created[0], raw)
                # It has a live key: another process's, or one this process had not loaded.
                state = self._load_subject(tenant, subject_hash)
                if state.live is not None:
                    return state.live
        raise RuntimeError(f"could not create a key for a subject of tenant {tenant}")

    def period_key(self, tenant: str, owner: str) -> _Key | None:
        """The tenant's key of the period `owner` (:func:`period_owner`), created if the
        period has none; None when it was destroyed or is past the tenant's retention of
        the period's family."""
        self.poll()
        state = self._subjects.get((tenant, owner))
        if state is None:
            with self._lock:
                state = self._subjects.get((tenant, owner))  # made while this thread waited
                if state is not None:
                    return state.live
                raw = AESGCM.generate_key(bit_length=256)
                family, _, day = owner.partition("/")
                ends = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
                created = self._execute(
                    _CREATE_PERIOD_SQL.format(column=_RETENTION_COLUMNS[family]),
                    {**self._creation(tenant, owner, raw), "ends": ends},
                )
                if created:
                    return self._keep_created(tenant, owner, created[0], raw)
                state = self._load_subject(tenant, owner)
        return state.live

    def has_period(self, tenant: str, owner: str) -> bool:
        """Whether what is known of the tenant's key of the period `owner` is cached."""
        return (tenant, owner) in self._subjects

    def ensure_periods(self, periods: Iterable[tuple[str, str]]) -> None:
        """Create or load the key of each (tenant, period owner) not cached: EventLog calls
        it in a worker thread before sealing transcripts and memories, like `ensure_keys`."""
        for tenant, owner in sorted(set(periods)):
            if (tenant, owner) not in self._subjects:
                self.period_key(tenant, owner)

    def _creation(self, tenant: str, subject_hash: str, raw: bytes) -> dict[str, Any]:
        return {
            "tenant": tenant,
            "subject_hash": subject_hash,
            "master": self.master.current.id,
            "wrapped": self.master.current.wrap(raw, _wrap_context(tenant, subject_hash)),
        }

    def _keep_created(self, tenant: str, subject_hash: str, row: Any, raw: bytes) -> _Key:
        key_id, _version, erased_at = row
        key = _Key(str(key_id), tenant, subject_hash, AESGCM(raw), raw)
        self._keys[key.kid] = key
        self._subjects[(tenant, subject_hash)] = _Subject(key, erased_at)
        return key

    def erasures(self) -> AESGCM:
        """The deployment key that seals the subject of user.forgotten events."""
        aead = self._erasures
        if aead is None:
            aead = self._erasures = AESGCM(self.deployment_key(ERASURES))
        return aead

    def deployment_key(self, name: str) -> bytes:
        raw = self._deployment.get(name)
        if raw is None:
            with self._lock:
                if name not in self._load_deployment():
                    key = os.urandom(_KEY_BYTES)
                    wrapped = self.master.current.wrap(key, _deployment_context(name))
                    self._execute(_CREATE_DEPLOYMENT_SQL, [name, self.master.current.id, wrapped])
                raw = self._load_deployment()[name]
        return raw

    def check(self) -> None:
        """Open (or create) the deployment keys: fails fast, with ConfigurationError, when
        the configured master key is not the one this database's keys were wrapped with."""
        for name in (PSEUDONYMS, ERASURES):
            self.deployment_key(name)

    # -- erasure ----------------------------------------------------------------------------

    def destroy(self, tenant: str, subject: str, erased_at: datetime | None) -> bool:
        """Carry out an erasure on this store's own connection (see destroy_subject_key)."""
        subject_hash = self.subject_hash(subject)
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute(_ERASURE_LOCK_SQL, [f"{tenant}/{subject_hash}"])
                    row = conn.execute(
                        _DESTROY_SQL,
                        {"tenant": tenant, "subject_hash": subject_hash, "erased_at": erased_at},
                    ).fetchone()
            except psycopg.OperationalError as exc:
                self._disconnect()
                raise DatabaseUnavailable(self.database_url, str(exc).strip()) from exc
            self.forget(tenant, subject_hash)
        return bool(row and row[0])

    def forget(self, tenant: str, subject_hash: str) -> None:
        """Drop what this process holds of a subject's keys (after an erasure): the next
        use reads them again from the database. Not "destroyed" in the cache: an erasure
        already carried out (a redelivered ``user.forgotten``) destroys nothing, and the
        subject's live key must keep opening what was sealed with it."""
        with self._lock:
            state = self._subjects.pop((tenant, subject_hash), None)
            if state is not None and state.live is not None:
                self._keys.pop(state.live.kid, None)
            self.polled_at = 0.0  # what the codec remembers is stale: poll on next use

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    # -- the database -----------------------------------------------------------------------

    def _load_subject(self, tenant: str, subject_hash: str) -> _Subject:
        return self._load(_LOAD_SUBJECT_SQL, [tenant, subject_hash], (tenant, subject_hash))

    def _load(self, sql: str, params: Sequence[Any], subject: tuple[str, str] | None) -> _Subject:
        rows = self._execute(sql, params)
        if rows:
            subject = (rows[0][1], rows[0][2])
        return self._keep(subject, rows)

    def _keep(self, subject: tuple[str, str] | None, rows: Sequence[Any]) -> _Subject:
        """Cache one subject's rows (every key and tombstone of it)."""
        live: _Key | None = None
        erased_at: datetime | None = None
        for key_id, tenant, subject_hash, _version, master_id, wrapped, erased in rows:
            kid = str(key_id)
            if wrapped is None:
                key = _Key(kid, tenant, subject_hash, None)
                if erased is not None and (erased_at is None or erased > erased_at):
                    erased_at = erased
            else:
                cached = self._keys.get(kid)
                if cached is not None and cached.aead is not None:
                    key = cached
                else:
                    context = _wrap_context(tenant, subject_hash)
                    raw = self.master.by_id(master_id).unwrap(bytes(wrapped), context)
                    key = _Key(kid, tenant, subject_hash, AESGCM(raw), raw)
                live = key
            self._keys[kid] = key
        state = _Subject(live, erased_at)
        if subject is not None:
            if len(self._subjects) >= _CACHE_LIMIT:
                self._subjects.clear()
                self._keys.clear()
                if live is not None:
                    self._keys[live.kid] = live
            self._subjects[subject] = state
        return state

    def _load_deployment(self) -> dict[str, bytes]:
        for name, master_id, wrapped in self._execute(_DEPLOYMENT_SQL, []):
            if name not in self._deployment:
                raw = self.master.by_id(master_id).unwrap(bytes(wrapped), _deployment_context(name))
                self._deployment[name] = raw
        return self._deployment

    def poll_due(self) -> bool:
        """Whether the next use of the cache polls the database (:meth:`poll`)."""
        return time.monotonic() - self.polled_at >= self.cache_s

    def poll(self) -> None:
        """Every `cache_s`: learn the keys destroyed since the previous poll (each use of
        the cache calls it; an append has it run in a worker thread first,
        :func:`_poll_if_due`, so the sealing does not query on the event loop)."""
        now = time.monotonic()
        if not self.poll_due() or not self._lock.acquire(blocking=False):
            return  # fresh enough, or another thread is polling
        try:
            # The first poll only sets the start: every key loaded after it is current.
            since = self._poll_since or datetime.max.replace(tzinfo=UTC)
            rows = self._execute(_POLL_SQL, [since - _POLL_OVERLAP])
            for db_now, key_id, tenant, subject_hash, erased in rows:
                self._poll_since = db_now
                if key_id is None:
                    continue
                kid = str(key_id)
                if kid in self._keys:
                    self._keys[kid] = _Key(kid, tenant, subject_hash, None)
                state = self._subjects.get((tenant, subject_hash))
                if state is not None:
                    live = None if state.live is None or state.live.kid == kid else state.live
                    latest = erased if state.erased_at is None else max(erased, state.erased_at)
                    self._subjects[(tenant, subject_hash)] = _Subject(live, latest)
            self.polled_at = now
        finally:
            self._lock.release()

    def _execute(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[Any]:
        for attempt in (1, 2):
            try:
                cursor = self._connection().execute(sql, params)
                return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError as exc:
                self._disconnect()
                if attempt == 2:
                    raise DatabaseUnavailable(self.database_url, str(exc).strip()) from exc
        raise AssertionError("unreachable")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = database.connect_sync(self.database_url, connect_timeout=5)
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


# -- the codec ---------------------------------------------------------------------------


# On the projections' hot path (a decode opens every personal value of an event): the
# binascii calls, not base64's wrappers around them.
def _seal(aead: AESGCM, kid: str, text: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = aead.encrypt(nonce, text.encode(), kid.encode())
    return f"{SEALED}{kid}:{binascii.b2a_base64(nonce + sealed, newline=False).decode('ascii')}"


def _open(aead: AESGCM, kid: str, payload: str) -> str:
    try:
        raw = binascii.a2b_base64(payload)
        return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], kid.encode()).decode()
    except (InvalidTag, binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError(f"a value sealed with key {kid} does not open") from None


# Where a sealed record names its subject's key: near its start, so a search stops early.
_SEALED_SUBJECT = re.compile(rb'"subject":"[^"/]+/enc:v1:([0-9]+):')
# A subject written before encryption (no escapes: one that has some is looked up alone).
_PLAIN_SUBJECT = re.compile(rb'"subject":"([^"\\/]+/[^"\\]+)"')
# Where a sealed transcript names its period's key (a rebuild over a year of calls meets
# a key per tenant and day).
_SEALED_TRANSCRIPT = re.compile(rb'"enc:p1:([0-9]+):')


def _split(sealed: str) -> tuple[str, str]:
    kid, sep, payload = sealed[len(SEALED) :].partition(":")
    if not sep or not kid:
        raise ValueError("a sealed value is enc:v1:<key id>:<base64>")
    return kid, payload


class SubjectKeyCodec:
    """Seals personal data with the subject's key; see the module docstring."""

    def __init__(self, store: SubjectKeyStore) -> None:
        self.store = store
        # A transcript's key by (period key id, subject key id): derived once, used while
        # both keys are (the store is asked about each on every use).
        self._transcript_keys: dict[tuple[str, str], AESGCM] = {}
        # (key id, subject, when the store last polled, AEAD, associated data) of the last
        # value opened: an event's values share them, so its later values skip the lookups
        # (until the store has polled again, or a poll is due).
        self._opened: tuple[str, str, float, AESGCM, bytes] | None = None

    def encode(self, subject: str, value: str) -> str:
        if not value:
            return value  # nothing to hide, and a stored "" decodes as itself
        tenant = subject.partition("/")[0]
        key = self.store.live_key(tenant, self.store.subject_hash(subject))
        assert key.aead is not None
        return _seal(key.aead, key.kid, value)

    def encode_period(self, subject: str, value: str, began: datetime, family: str) -> str:
        if not value:
            return value
        tenant = subject.partition("/")[0]
        period = self.store.period_key(tenant, period_owner(began, family))
        if period is None:
            return ERASED  # the period is past the tenant's retention: nothing to keep
        key = self.store.live_key(tenant, self.store.subject_hash(subject))
        aead, associated = self._transcript_key(period, key)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = aead.encrypt(nonce, value.encode(), associated)
        payload = binascii.b2a_base64(nonce + sealed, newline=False).decode("ascii")
        return f"{SEALED_TRANSCRIPT}{period.kid}:{key.kid}:{payload}"

    def _transcript_key(self, period: _Key, key: _Key) -> tuple[AESGCM, bytes]:
        """The key a transcript (or memory) is sealed with: HMAC-SHA256 of the subject's
        key under the period's (both must be live), and the associated data naming the two.
        The label says transcript for both families: their period keys differ."""
        pair = (period.kid, key.kid)
        aead = self._transcript_keys.get(pair)
        if aead is None:
            assert period.secret is not None and key.secret is not None
            derived = hmac.digest(period.secret, b"memstream transcript\x00" + key.secret, "sha256")
            if len(self._transcript_keys) >= _CACHE_LIMIT:
                self._transcript_keys.clear()
            aead = self._transcript_keys[pair] = AESGCM(derived)
        return aead, f"{period.kid}:{key.kid}".encode()

    def _open_transcript(self, subject: str, value: str) -> str:
        # Indexes, not partitions: a transcript is kilobytes, copied once (the payload).
        start = len(SEALED_TRANSCRIPT)
        first = value.find(":", start)
        second = value.find(":", first + 1) if first > start else -1
        if second <= first + 1:
            raise ValueError("a sealed transcript is enc:p1:<period key id>:<key id>:<base64>")
        pkid, kid, payload = value[start:first], value[first + 1 : second], value[second + 1 :]
        period = self.store.key(pkid)
        if period.aead is None:
            return ERASED  # past retention (of transcripts, or memories)
        key = self._subject_key(kid, subject)
        if key is None:
            return ERASED  # the subject was erased
        if period_family(period.subject_hash) is None or period.tenant != key.tenant:
            raise ValueError(f"key {pkid} is not a period key of the transcript's tenant")
        aead, associated = self._transcript_key(period, key)
        try:
            raw = binascii.a2b_base64(payload)
            return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated).decode()
        except (InvalidTag, binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError(f"a transcript sealed with keys {pkid}, {kid} does not open") from None

    def decode(self, subject: str, value: str) -> str:
        if not value.startswith(SEALED):
            if value.startswith(SEALED_TRANSCRIPT):
                return self._open_transcript(subject, value)
            return value  # written before encryption
        # _split, inlined: this runs for every personal value a projection reads.
        kid, sep, payload = value[_SEALED_LENGTH:].partition(":")
        if not sep:
            raise ValueError("a sealed value is enc:v1:<key id>:<base64>")
        store = self.store
        opened = self._opened
        if (
            opened is None
            or opened[0] != kid
            or opened[1] != subject
            or opened[2] != store.polled_at
            or time.monotonic() - opened[2] >= store.cache_s  # a poll is due: go through it
        ):
            opened = self._check(kid, subject)
            if opened is None:
                return ERASED
        try:
            raw = binascii.a2b_base64(payload)
            return opened[3].decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], opened[4]).decode()
        except (InvalidTag, binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError(f"a value sealed with key {kid} does not open") from None

    def _check(self, kid: str, subject: str) -> tuple[str, str, float, AESGCM, bytes] | None:
        """The key `kid` for a value of `subject` (None: destroyed), remembered as the
        last one opened."""
        key = self._subject_key(kid, subject)
        if key is None or key.aead is None:
            return None
        self._opened = opened = (kid, subject, self.store.polled_at, key.aead, kid.encode())
        return opened

    def _subject_key(self, kid: str, subject: str) -> _Key | None:
        """The live key `kid` of `subject` (None: destroyed). A value opens only in an
        event of its own subject (the hash covers the tenant): no copying it into
        another's."""
        key = self.store.key(kid)
        if key.aead is None:
            return None
        if key.subject_hash != self.store.subject_hash(subject):
            raise ValueError(f"a value sealed with key {kid} belongs to another subject")
        return key

    def pseudonym(self, subject: str) -> str:
        """``tenant/<keyed hash>``: the record key, and the subject as the log names it."""
        return f"{subject.partition('/')[0]}/{self.store.subject_hash(subject)}"

    def seal_subject(self, subject: str, *, erasure_record: bool = False) -> str:
        tenant, _, user = subject.partition("/")
        if erasure_record:
            return f"{tenant}/{_seal(self.store.erasures(), ERASURES, user)}"
        key = self.store.live_key(tenant, self.store.subject_hash(subject))
        assert key.aead is not None
        return f"{tenant}/{_seal(key.aead, key.kid, user)}"

    def open_subject(self, stored: str) -> tuple[str, datetime | None] | None:
        tenant, sep, user = stored.partition("/")
        if not sep:
            return stored, None  # not a subject: validation says so
        if not user.startswith(SEALED):
            # Written before encryption: still erased by the time rule (schemas.wire).
            return stored, self.store.subject(tenant, self.store.subject_hash(stored)).erased_at
        kid, payload = _split(user)
        if kid == ERASURES:
            return f"{tenant}/{_open(self.store.erasures(), kid, payload)}", None
        key = self.store.key(kid)
        if key.aead is None:
            return None
        if key.tenant != tenant:
            raise ValueError(f"a subject sealed with key {kid} belongs to another tenant")
        subject = f"{tenant}/{_open(key.aead, kid, payload)}"
        return subject, self.store.subject(tenant, key.subject_hash).erased_at

    def destroy(self, tenant: str, subject: str, erased_at: datetime | None = None) -> bool:
        return self.store.destroy(tenant, subject, erased_at)

    def __repr__(self) -> str:
        return f"SubjectKeyCodec(master={self.store.master.current.id})"


# -- installing, erasing, rotating ---------------------------------------------------------


# Next periods' keys being created in the background (prepare_keys), and their tasks.
_AHEAD: set[tuple[str, str]] = set()
_AHEAD_TASKS: set[asyncio.Future[None]] = set()


async def prepare_keys(events: Iterable[Event]) -> None:
    """Have the keys that sealing `events` needs in memory (`EventLog` calls it): the live
    key of each subject and, for a transcript or memory, its period's key. One missing costs a
    worker thread's trip to the database, never the event loop's; so does the cache's poll
    for destroyed keys, when it is due. Nothing to do without encryption, or when every
    key is cached and the cache is fresh.

    A transcript also has its next period's key made in the background when it is not
    cached (:func:`_create_ahead`), so the first call of each new day does not wait for
    a committed insert: only a tenant's very first day, or a day after a gap, does."""
    codec = get_personal_codec()
    if isinstance(codec, SubjectKeyCodec):
        store = codec.store
        await _poll_if_due(store)
        subjects: set[str] = set()
        periods: set[tuple[str, str]] = set()
        for event in events:
            subjects.add(event.subject)
            if event.period_family is not None:
                periods.add((event.tenant, period_owner(event.began, event.period_family)))
        wanted = [s for s in subjects if store.lacks_live_key(s)]
        missing = [p for p in periods if not store.has_period(*p)]
        _create_ahead(store, [(tenant, next_period(owner)) for tenant, owner in periods])
        if wanted or missing:

            def prepare() -> None:
                store.ensure_keys(wanted)
                store.ensure_periods(missing)

            await asyncio.to_thread(prepare)


async def _poll_if_due(store: SubjectKeyStore) -> None:
    """Every MEMSTREAM_KEY_CACHE_S the cache asks the database which keys were destroyed:
    here in a worker thread, before an append reads the cache, rather than as a query on
    the event loop inside it."""
    if store.poll_due():
        await asyncio.to_thread(store.poll)


def _create_ahead(store: SubjectKeyStore, periods: Iterable[tuple[str, str]]) -> None:
    """Create the keys of `periods` in a worker thread, not waited for: a failure only
    means the first transcript of such a period creates its key itself."""
    ahead = [p for p in periods if p not in _AHEAD and not store.has_period(*p)]
    if not ahead:
        return
    _AHEAD.update(ahead)
    task = asyncio.get_running_loop().run_in_executor(None, store.ensure_periods, ahead)
    _AHEAD_TASKS.add(task)

    def done(finished: asyncio.Future[None]) -> None:
        _AHEAD_TASKS.discard(finished)
        _AHEAD.difference_update(ahead)
        if not finished.cancelled() and finished.exception() is not None:
            logger.warning(
                "could not create the next period's keys ahead; the first transcript"
                " of that period will: %s",
                finished.exception(),
            )

    task.add_done_callback(done)


async def keys_created_ahead() -> None:
    """Wait for the keys being created ahead (EventLog.close, and tests)."""
    loop = asyncio.get_running_loop()
    while mine := [task for task in _AHEAD_TASKS if task.get_loop() is loop]:
        await asyncio.gather(*mine, return_exceptions=True)


async def latest_erasures(subjects: Iterable[str]) -> dict[str, datetime]:
    """The latest erasure of each of `subjects` that was ever erased, as this process's key
    store knows it (another process's erasure within ``MEMSTREAM_KEY_CACHE_S``; meanwhile
    what it seals for the subject uses the destroyed key, and is erased anyway). Subjects
    not cached cost one query, in a worker thread. Without encryption there is no record
    of erasures here: nothing is found."""
    codec = get_personal_codec()
    wanted = set(subjects)
    if not wanted or not isinstance(codec, SubjectKeyCodec):
        return {}
    store = codec.store
    await _poll_if_due(store)
    if all(store.knows(s) for s in wanted):
        return store.latest_erasures(wanted)  # from memory, as sealing for them would be
    return await asyncio.to_thread(store.latest_erasures, wanted)


def prefetch_keys(records: Iterable[bytes | None]) -> None:
    """Load the keys these wire records were sealed with, and what is known of the
    subjects of records written before encryption (their latest erasure), in one query
    each (the projection runtime calls it before decoding a batch). Nothing to do
    without encryption."""
    codec = get_personal_codec()
    if isinstance(codec, SubjectKeyCodec):
        kids = set()
        plain: set[str] = set()
        for record in records:
            if not record:
                continue
            found = _SEALED_SUBJECT.search(record)
            if found:
                kids.add(found.group(1).decode())
                period = _SEALED_TRANSCRIPT.search(record, found.end())
                if period:
                    kids.add(period.group(1).decode())
            elif (unsealed := _PLAIN_SUBJECT.search(record)) and b"/enc:" not in unsealed[1]:
                plain.add(unsealed[1].decode())
        codec.store.prefetch(kids, plain)


def install_personal_codec(settings: StreamsSettings, *, check: bool = False) -> PersonalDataCodec:
    """Install the encrypting codec for this process from `settings` (once: a codec on the
    same database is kept) and return the codec installed. `check` opens the deployment
    keys now (the database must be migrated): a wrong master key fails at start-up.
    With `personal_data_encryption` off, nothing changes (benchmarks only)."""
    current = get_personal_codec()
    if not settings.personal_data_encryption:
        return current
    url = settings.require_database()
    if isinstance(current, SubjectKeyCodec) and current.store.database_url == url:
        codec = current
    else:
        store = SubjectKeyStore(url, load_master_keys(settings), settings.key_cache_s)
        codec = SubjectKeyCodec(store)
        set_personal_codec(codec)
        if isinstance(current, SubjectKeyCodec):
            current.store.close()
    if check:
        codec.store.check()
    return codec


async def destroy_subject_key(
    conn: AsyncConnection[Any],
    tenant: str,
    subject: str,
    *,
    erased_at: datetime | None = None,
) -> bool:
    """Erase `subject`: destroy its data key (the row stays, without key material, as a
    tombstone saying when), in `conn`'s transaction if one is open. Returns whether this
    call changed anything: an erasure at or after `erased_at` (default: now) already
    carried out makes it a no-op. From then on its sealed values decode as erased and its
    events dated at or before `erased_at` do not decode (SubjectErased).

    Appending a ``user.forgotten`` through `EventLog` does this already
    (:func:`carry_out_erasure`): an erasure API appends that event and need not call this.
    """
    codec = get_personal_codec()
    if not isinstance(codec, SubjectKeyCodec):
        return False  # no encryption: no key to destroy
    subject_hash = codec.store.subject_hash(subject)
    async with conn.transaction():
        await conn.execute(_ERASURE_LOCK_SQL, [f"{tenant}/{subject_hash}"])
        cursor = await conn.execute(
            _DESTROY_SQL, {"tenant": tenant, "subject_hash": subject_hash, "erased_at": erased_at}
        )
        row = await cursor.fetchone()
    codec.store.forget(tenant, subject_hash)
    return bool(row and row[0])


async def carry_out_erasure(event: UserForgotten) -> None:
    """Destroy the key of `event`'s subject before the event is sealed and appended
    (`EventLog.append_many` calls this): what was sealed before it cannot be opened any
    more, what follows it is sealed with a new key, in this process at once and in others
    within their cache bound; the event's own subject is sealed with the erasure key."""
    codec = get_personal_codec()
    if isinstance(codec, SubjectKeyCodec):
        destroy: Callable[[str, str, datetime | None], bool] = codec.destroy
        await asyncio.to_thread(destroy, event.tenant, event.subject, event.occurred_at)


async def rotate_master_key(conn: AsyncConnection[Any], master: MasterKeys) -> int:
    """Re-wrap every key wrapped by a retiring master key with `master.current`; return how
    many. Run it with every process already configured with the new key as
    MEMSTREAM_MASTER_KEY and the old one in MEMSTREAM_PREVIOUS_MASTER_KEYS; afterwards the
    old one can be removed. Idempotent: a second run finds nothing to re-wrap."""
    new = master.current
    rewrapped = 0
    cursor = await conn.execute(
        "SELECT key_id, tenant, subject_hash, master_key_id, wrapped_key"
        " FROM memstream.subject_keys WHERE wrapped_key IS NOT NULL AND master_key_id <> %s",
        [new.id],
    )
    for key_id, tenant, subject_hash, master_id, wrapped in await cursor.fetchall():
        context = _wrap_context(tenant, subject_hash)
        raw = master.by_id(master_id).unwrap(bytes(wrapped), context)
        # Guarded: a key destroyed meanwhile stays destroyed.
        update = await conn.execute(
            "UPDATE memstream.subject_keys SET master_key_id = %s, wrapped_key = %s"
            " WHERE key_id = %s AND master_key_id = %s",
            [new.id, new.wrap(raw, context), key_id, master_id],
        )
        rewrapped += update.rowcount
    cursor = await conn.execute(
        "SELECT name, master_key_id, wrapped_key FROM memstream.deployment_keys"
        " WHERE master_key_id <> %s",
        [new.id],
    )
    for name, master_id, wrapped in await cursor.fetchall():
        context = _deployment_context(name)
        raw = master.by_id(master_id).unwrap(bytes(wrapped), context)
        update = await conn.execute(
            "UPDATE memstream.deployment_keys SET master_key_id = %s, wrapped_key = %s"
            " WHERE name = %s AND master_key_id = %s",
            [new.id, new.wrap(raw, context), name, master_id],
        )
        rewrapped += update.rowcount
    return rewrapped


async def destroy_periods_before(conn: AsyncConnection[Any], tenant: str, owner: str) -> list[str]:
    """Destroy `tenant`'s period keys of `owner`'s family (``period_owner``) for the days
    before `owner`'s; the owners destroyed. Whatever they sealed no longer opens, in the
    log or anywhere (services/retention.py)."""
    family = period_family(owner)
    if family is None:
        raise ValueError(f"{owner!r} is not a period owner")
    params = {"tenant": tenant, "family": family, "owner": owner}
    cursor = await conn.execute(_DESTROY_PERIODS_SQL, params)
    return [row[0] for row in await cursor.fetchall()]
