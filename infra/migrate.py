"""Apply the core SQL migrations in ``infra/migrations`` in order, each exactly once.

Projections create their own tables (``projections/<name>/schema.sql``) when their
runner starts; this covers only what every component shares.
"""

from __future__ import annotations

import logging
from pathlib import Path

from streams import database

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same for every migrating process.
_LOCK_KEY = 0x6D656D73


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; return the names applied. Safe to run concurrently."""
    applied: list[str] = []
    with database.connect_sync(database_url, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.memstream_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM public.memstream_migrations")}
            for path in sorted(MIGRATIONS.glob("*.sql")):
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "INSERT INTO public.memstream_migrations (name) VALUES (%s)", [path.name]
                    )
                logger.info("applied migration %s", path.name)
                applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    return applied
