"""The query tests' golden corpus: one caller's memories (and another's), a call, embedded
by the local model and projected into the read models once per test module.

The fixtures that project it once per module and copy it for each test are in this
package's conftest.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx

from projections.embeddings.local import LocalEmbedder
from schemas import ConversationEnded, MemoryExtracted, Source
from services.query.app import create_app
from services.settings import Settings
from tests.helpers import BASE_TIME
from tests.integration.test_memories_projection import TENANT, superseded
from tests.integration.test_memories_projection import extracted as _extracted

__all__ = ["EMBEDDER", "OTHER", "SUBJECT", "TENANT", "corpus_events"]

# Numbers a phone library places (the agent tools find callers by their number).
SUBJECT = f"{TENANT}/+14155550123"
OTHER = f"{TENANT}/+14155550124"
NOW = BASE_TIME + timedelta(days=30)

EMBEDDER = LocalEmbedder()


def extracted(content: str, *, subject: str = SUBJECT, **options: Any) -> MemoryExtracted:
    return _extracted(content, subject=subject, **options)


def corpus_events() -> list[Any]:
    """The events the read models are projected from."""
    leeds = extracted("Lives in Leeds", key="home_city", days=0, salience=0.7)
    manchester = extracted("Lives in Manchester", key="home_city", days=20, salience=0.7)
    events = [
        extracted("Prefers Italian food", days=1, salience=0.6),
        leeds,
        extracted("Allergic to penicillin", days=2, salience=0.9),
        extracted("Has a dog named Biscuit", days=3, salience=0.5),
        # Cosine 0.83 to the memory above: the two are linked.
        extracted("Biscuit the dog is a golden retriever", days=5, salience=0.4),
        extracted("Dentist appointment on Tuesday", sector="episodic", days=25, salience=0.6),
        extracted("Feels anxious about the knee surgery", sector="emotional", days=26),
        extracted("Goes running every morning", sector="procedural", days=4, salience=0.5),
        manchester,
        superseded(leeds, manchester),
        # Another caller of the same tenant: never in this caller's results.
        extracted("Prefers Thai food", subject=OTHER, days=1, salience=0.9),
        # The call the briefing names as the last interaction (no extraction runs here).
        ConversationEnded.create(
            tenant=TENANT,
            subject=SUBJECT,
            source=Source(platform="vapi", event_id="call-q1"),
            occurred_at=BASE_TIME + timedelta(days=26),
            data={
                "conversation_id": "call-q1",
                "status": "done",
                "started_at": BASE_TIME + timedelta(days=26),
                "turns": [
                    {"role": "agent", "text": "Bayview Clinic, how can I help?", "offset_ms": 0},
                    {"role": "user", "text": "About my knee surgery next week.", "offset_ms": 900},
                    {"role": "agent", "text": "It is on Tuesday at 9am.", "offset_ms": 2000},
                    {"role": "user", "text": "Thanks, see you then.", "offset_ms": 3100},
                ],
                "analysis": {"summary": "Asked about the knee surgery"},
            },
        ),
    ]
    return events


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The query app (with the corpus' embedder) from start to a clean shutdown, over ASGI
    in process: a client gets whole responses only."""
    app = create_app(settings, embedder=EMBEDDER)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://query") as client:
            yield client
