"""Tune the search on the recall corpus's *tune* half: load it once, then try weights.

``python -m tests.benchmarks.tune_recall [--keep NAME] [--half tune] [name=value ...]``

1. Like bench_recall: `memstream run` on a topic prefix and database of their own, every
   call of the half posted through its platform's webhook (long sessions through
   ``/v1/events``), processing awaited. With ``--keep NAME`` the database is kept as
   ``NAME`` and reused by the next run (topics are deleted either way: the read
   models are what a search reads).
2. Every question is searched in this process, by ``services.query.search`` itself (the
   same code the query service runs, without HTTP), once per setting: the defaults of
   ``SearchWeights``, then each ``name=value`` given (several in one argument, joined by
   ``,``: ``lexical=1.0,dense=0.5``), each scored as bench_recall scores it.

It prints fused recall@5/@10, answer hit@5 and stale rate per corpus and setting. Only the
tune half is ever loaded by default: the report half is for bench_recall's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection

from infra import local
from infra.migrate import migrate
from projections.embeddings.local import LocalEmbedder
from schemas.envelope import utc_now
from services.query.app import hit_json
from services.query.search import SearchQuery, SearchWeights, search_memories
from services.settings import Settings
from tests.benchmarks.bench_ingest import _ingest_service
from tests.benchmarks.bench_recall import (
    CORPUS_DIR,
    LIMIT,
    TENANT,
    Dialogue,
    Score,
    assign_stand_ins,
    load_corpora,
    post_and_process,
    recall_tenant,
    result_text,
    score,
    summarise,
)
from tests.benchmarks.harness import _delete_topics, database_url

logger = logging.getLogger("tests.benchmarks.tune_recall")


def parse_setting(text: str) -> SearchWeights:
    """``a=1,b=2`` as SearchWeights overriding the defaults."""
    changes: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(SearchWeights)}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown weight {name!r}: one of {', '.join(fields)}")
        default = getattr(SearchWeights(), name)
        if isinstance(default, bool):
            changes[name] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, str):
            changes[name] = value
        else:
            changes[name] = type(default)(float(value))
    return dataclasses.replace(SearchWeights(), **changes)


async def load(settings: Settings, dialogues: Sequence[Dialogue]) -> None:
    """Post every conversation through the real services and wait until projected."""
    token = await recall_tenant(settings, "tune_recall")
    with tempfile.TemporaryDirectory(prefix="tune-recall-") as scratch:
        async with _ingest_service(settings, Path(scratch), command=("run",)) as service:
            await post_and_process(settings, service.port, token, dialogues)


async def evaluate(
    db: AsyncConnection[Any],
    dialogues: Sequence[Dialogue],
    vectors: dict[str, list[float]],
    weights: SearchWeights,
    sources: tuple[Any, ...] = ("memories", "passages"),
    misses: bool = False,
) -> dict[str, list[Score]]:
    """Every question searched with ``weights``, scored, by corpus; with ``misses``, each
    question not answered in the top 5 is printed with what was returned instead."""
    now = utc_now()
    scores: dict[str, list[Score]] = {}
    for dialogue in dialogues:
        for question in dialogue.questions:
            query = SearchQuery(
                TENANT, f"{TENANT}/{dialogue.user}", question.question, limit=LIMIT,
                sources=sources,
            )  # fmt: skip
            hits = await search_memories(
                db, query, vector=vectors[question.question], model=LocalEmbedder.name,
                now=now, weights=weights,
            )  # fmt: skip
            results = [hit_json(h) for h in hits]
            scored = score(question, results)
            scores.setdefault(dialogue.corpus, []).append(scored)
            if misses and scored.hit_5 is False:
                print_miss(dialogue, question, scored, results)
    return scores


def print_miss(
    dialogue: Dialogue, question: Any, scored: Score, results: Sequence[dict[str, Any]]
) -> None:
    answers = " / ".join("|".join(k) if isinstance(k, tuple) else str(k) for k in question.answers)
    print(f"\n[{dialogue.corpus} {question.kind}] {question.id}: {question.question}")
    print(f"  answers: {answers}  answer rank: {scored.answer_rank}  "
          f"evidence rank: {scored.first_evidence_rank}")  # fmt: skip
    for rank, result in enumerate(results[:5], 1):
        text = " ".join(result_text(result).split())
        print(f"  {rank}. {result['type']:<8} {text[:160]}")


def report(label: str, scores: dict[str, list[Score]]) -> None:
    everything = [s for group in scores.values() for s in group]
    line = [f"{label:<40}"]
    for name, group in [*sorted(scores.items()), ("all", everything)]:
        s = summarise(group)
        line.append(
            f"{name}: r@5 {s.recall_5 or 0:.3f} r@10 {s.recall_10 or 0:.3f} "
            f"hit@5 {s.hit_5 or 0:.3f} ({s.hit_5_single or 0:.3f}) stale {s.stale_rate or 0:.2f}"
        )
    print(" | ".join(line), flush=True)


def main(argv: Sequence[str]) -> None:
    infrastructure = local.up(Settings.from_env())  # outside the loop: it runs its own
    try:
        asyncio.run(tune(infrastructure.settings, argv))
    finally:
        infrastructure.down()


async def tune(base: Settings, argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.tune_recall")
    parser.add_argument("settings", nargs="*", help="name=value[,name=value] to try")
    parser.add_argument("--keep", help="keep (and reuse) the loaded database under this name")
    parser.add_argument("--half", default="tune", choices=("tune", "report"))
    parser.add_argument("--modes", action="store_true", help="also memories and passages alone")
    parser.add_argument("--misses", action="store_true", help="print the defaults' misses")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    corpora = [c for c in load_corpora(CORPUS_DIR) if c.half == args.half]
    dialogues, _ = assign_stand_ins([d for c in corpora for d in c.dialogues])
    name = args.keep or f"tune_recall_{uuid.uuid4().hex[:8]}"
    admin = database_url(base.require_database(), "postgres")
    settings = base.replace(topic_prefix=name.replace("_", "-"), database_url=database_url(
        admin, name))  # fmt: skip
    try:
        async with await AsyncConnection.connect(admin, autocommit=True) as conn:
            cursor = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            exists = await cursor.fetchone() is not None
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        if not exists:
            await asyncio.to_thread(migrate, settings.require_database())
            await load(settings, dialogues)
            await _delete_topics(settings)
        embedder = LocalEmbedder()
        questions = sorted({q.question for d in dialogues for q in d.questions})
        vectors = dict(zip(questions, embedder.embed(questions), strict=True))
        async with await AsyncConnection.connect(settings.require_database()) as db:
            await db.set_autocommit(True)
            trials = [("defaults", SearchWeights())]
            trials += [(text, parse_setting(text)) for text in args.settings]
            for label, weights in trials:
                misses = args.misses and label == "defaults"
                report(label, await evaluate(db, dialogues, vectors, weights, misses=misses))
                if args.modes:
                    for mode in ("memories", "passages"):
                        alone = await evaluate(db, dialogues, vectors, weights, (mode,))
                        report(f"{label} [{mode}]", alone)
    finally:
        if not args.keep:
            async with await AsyncConnection.connect(admin, autocommit=True) as conn:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main(sys.argv[1:])
