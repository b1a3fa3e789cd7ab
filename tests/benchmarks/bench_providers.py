"""Providers: the cost memstream adds around a remote model, and what concurrency buys.

- PII redaction, the CPU it adds to every text sent out: the turns of the golden
  transcripts (tests/unit/extraction_golden), redacted one by one, single-threaded.
- LLM extraction through the extraction processor on the real broker and database, the
  model played by the fake OpenAI server (tests/fakes/openai_server.py) answering each
  request after 100 ms (a fast hosted model answers in 0.5-3 s; the figure scales with
  it): 200 conversations of 14 turns, each from its own caller, extracted with 1 and
  with 4 requests in flight (``MEMSTREAM_PROVIDER_CONCURRENCY``). Appends included.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from projections.extraction.processor import ExtractionProcessor
from projections.providers.redaction import redact
from schemas import ConversationEnded, Source
from streams import EventLog
from streams.offsets import log_extent
from streams.topics import CONVERSATIONS, Topics, ensure_topics
from tests.benchmarks.bench_memories import _catch_up
from tests.benchmarks.harness import BenchmarkContext, Figure
from tests.fakes.openai_server import CHAT, FakeOpenAI

GOLDEN = Path(__file__).parent.parent / "unit" / "extraction_golden"
CONVERSATIONS_N = 200
LATENCY_S = 0.1
REDACTION_ROUNDS = 200


def _transcripts() -> list[list[dict[str, str]]]:
    return [
        json.loads(path.read_text())["turns"] for path in sorted(GOLDEN.glob("*.transcript.json"))
    ]


def _conversations(tenant: str, n: int) -> list[ConversationEnded]:
    transcripts = _transcripts()
    at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    events = []
    for i in range(n):
        turns = transcripts[i % len(transcripts)]
        events.append(
            ConversationEnded.create(
                tenant=tenant,
                subject=f"{tenant}/+1555{i:07d}",
                source=Source(platform="elevenlabs", event_id=f"conv-{i}"),
                occurred_at=at + timedelta(minutes=i),
                data={
                    "conversation_id": f"conv-{i}",
                    "started_at": at + timedelta(minutes=i),
                    "status": "done",
                    "turns": [
                        {"role": t["role"], "text": t["text"], "offset_ms": j * 2000}
                        for j, t in enumerate(turns)
                    ],
                },
            )
        )
    return events


async def run(ctx: BenchmarkContext) -> list[Figure]:
    figures = [_redaction(ctx)]
    n = ctx.scaled(CONVERSATIONS_N)
    for concurrency in (1, 4):
        figures.append(await _extraction(ctx, n, concurrency))
    return figures


def _redaction(ctx: BenchmarkContext) -> Figure:
    texts = [t["text"] for turns in _transcripts() for t in turns]
    rounds = ctx.scaled(REDACTION_ROUNDS)
    began = time.perf_counter()
    for _ in range(rounds):
        for text in texts:
            redact(text)
    seconds = time.perf_counter() - began
    return ctx.figure(
        "redaction",
        rounds * len(texts) / seconds,
        "turns/s",
        params={"turns": len(texts), "rounds": rounds, "mean chars": _mean_len(texts)},
    )


def _mean_len(texts: list[str]) -> int:
    return round(sum(len(t) for t in texts) / len(texts))


async def _extraction(ctx: BenchmarkContext, n: int, concurrency: int) -> Figure:
    tenant = f"bench{concurrency}"
    settings = ctx.settings.replace(topic_prefix=f"{ctx.settings.topic_prefix}-c{concurrency}")
    await ensure_topics(settings)
    async with EventLog(settings) as log:
        await log.append_many(_conversations(tenant, n))
    topic = Topics(settings.topic_prefix).name(CONVERSATIONS)
    extent = await log_extent(settings.require_kafka(), [topic])
    ends = {tp: end for tp, (_, end) in extent.items()}
    # More records than conversations: the producer retried an append that had landed
    # (then requests exceed conversations: a conversation seen again in a later batch).
    records = sum(end - start for start, end in extent.values())
    with FakeOpenAI(slow_s=LATENCY_S) as fake:
        fake.fail("slow")  # every answer takes LATENCY_S: a stand-in for the model's time
        settings = settings.replace(
            openai_base_url=fake.base_url,
            openai_api_key="bench",
            llm_model="bench-model",
            provider_timeout_s=10.0,
            provider_concurrency=concurrency,
        )
        seconds, _ = await _catch_up(settings, ExtractionProcessor.from_settings(settings), ends)
        calls = fake.calls(CHAT)
    return ctx.figure(
        f"LLM extraction, {concurrency} in flight",
        n / seconds,
        "conversations/s",
        params={
            "conversations": n,
            "records": records,
            "model latency ms": LATENCY_S * 1000,
            "requests": calls,
        },
    )
