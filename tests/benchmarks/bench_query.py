"""Query service: memory-search latency and throughput, briefing latency, HNSW recall.

The tenant's read models are loaded directly (``COPY`` into the live versions of the
memories, embeddings and conversations read models; this benchmark measures reads, and
the projections' own rebuild speed is bench_memories'), growing through 10,000, 100,000
and 1,000,000 memories. Users hold 10-2,000 memories each (heavy-tailed, as in
bench_memories). Memory texts come from a bank of realistic sentences (facts,
preferences, plans, problems, habits, events, each with varied slots) embedded by the
real local model; each memory's vector is its sentence's plus small noise (cosine about
0.95), so near-duplicates and links exist as in real data. The model's HNSW index and the
passages' index by user are built the way the projections build them (``caught_up``).

Passages (what was said) come with them: 10 per memory, so at 100,000 memories the
tenant holds 1,000,000 passages, each user 10 per memory of theirs (100-20,000, heavy
tailed as the memories). A user's passages are the turns of their calls (7-26 turns,
13 on average; calls are also the conversation rows), composed from a bank of realistic
exchanges between the agent and the caller (greetings and reasons for calling,
identity checks, rescheduling, billing, faults, preferences, personal details, fillers,
closings, each with varied slots); each passage's context is its neighbours in its
call (``WINDOW``), as the conversations projection writes it. Its vector in
``passage_vectors`` (staged by binary ``COPY`` and inserted by the embeddings projection's
own statements) is its
turn's window within its bank exchange, embedded by the real local model, plus the same
small noise. Passages are written in the order their calls ended, interleaved across
users as a projection writes them; memories cite a caller turn of one of their user's
calls, so some passages fold into memories. Passages are capped at 1,000,000: the
users added for the million-memory size have calls without passages (10,000,000
passages would be ~25 GB and over half an hour of loading on a 2-core machine), so that
size measures the memories' growth, not the passages'. The loaded tables are vacuumed
and analysed, as autovacuum leaves a read model: a vacuum of gigabytes during the timed
region would be measured instead.

At each size, against `memstream query` running as its own process (HTTP, API key):

- *search latency*: 300 sequential ``POST /v1/memories/search`` for random users and
  questions (about facts and about what was said), the default request (memories and
  passages fused), each followed by the same request for memories only (``"sources":
  ["memories"]``, the *memories only* figures) to show what passages cost; the local
  model embeds each question inside the timed request;
- *sustained search*: 8 concurrent clients for 15 s, requests/s (the default request);
- *briefing latency*: 300 sequential ``GET /v1/users/{user}/briefing``;
- *recall@10 of the HNSW index*: 200 questions (50 at a million) searched tenant-wide
  through the HNSW index (the planner's choice for an unfiltered ORDER BY ... LIMIT) against exact
  search (index scans off) on the same rows. A per-user search itself is exact: the
  planner scans the user's own vectors through ``embeddings_by_subject`` (see
  docs/query.md), so its recall is 1 by construction; passages have no HNSW index
  (``passage_vectors_by_subject``, exact).

``MEMSTREAM_BENCH_QUERY_MAX=100000`` stops after the 100,000-memory size.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import signal
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from psycopg import AsyncConnection, sql

from projections.conversations import ConversationsProjection
from projections.conversations.passages import WINDOW
from projections.embeddings.local import LocalEmbedder
from projections.embeddings.projection import (
    _PASSAGE_COPY_SQL,
    _PASSAGE_INSERT_SQL,
    _PASSAGE_STAGING_SQL,
    EmbeddingsProjection,
    _binary_vector,
    hnsw_index_name,
)
from projections.memories import MemoriesProjection
from projections.memories.projection import DECAY_PER_DAY
from services import tenants
from services.settings import Settings
from streams import versions
from streams.copy import (
    BINARY_HEADER,
    BINARY_TRAILER,
    binary_bytes,
    binary_int4,
    binary_row_start,
    binary_timestamptz,
    copy_escape,
)
from streams.projection import version_schema
from tests.benchmarks.bench_memories import _memories_per_user
from tests.benchmarks.harness import BenchmarkContext, Figure, at_least, at_most, percentile
from tests.helpers import BASE_TIME, closed_port

logger = logging.getLogger(__name__)

TENANT = "bench"
SIZES = (10_000, 100_000, 1_000_000)
REQUESTS = 300
CONCURRENCY = 8
SUSTAIN_S = 15.0
RECALL_QUERIES = 200
# An exact search scans every vector: at a million, 50 questions keep it to minutes.
RECALL_QUERIES_LARGE = 50
NOISE = 0.012  # per dimension: |noise| ~ 0.23, cosine to the sentence ~ 0.97
PASSAGES_PER_MEMORY = 10
# 10 per memory up to 100,000 memories; no more at a million (see the docstring).
MAX_PASSAGES = 1_000_000
SEARCH_P95_TARGETS = {100_000: 20.0, 1_000_000: 60.0}
BRIEFING_P95_TARGET = 5.0
RECALL_TARGET = 0.95

_FACTS: list[tuple[Any, ...]] = [
    ("Lives in {}", ["Leeds", "Manchester", "Austin", "Denver", "Lyon", "Porto", "Osaka"]),
    ("Works as a {}", ["nurse", "teacher", "plumber", "software engineer", "chef", "pilot"]),
    ("Has a {} named {}", ["dog", "cat", "parrot"], ["Biscuit", "Max", "Luna", "Pepper"]),
    ("Allergic to {}", ["penicillin", "peanuts", "latex", "shellfish", "pollen"]),
    ("Prefers {} appointments", ["morning", "afternoon", "evening", "weekend"]),
    ("Prefers to be contacted by {}", ["email", "text message", "phone"]),
    ("Likes {} food", ["Italian", "Thai", "Mexican", "Japanese", "Indian"]),
    (
        "Plans to {} next {}",
        ["move house", "travel to Spain", "start a new job", "renovate the kitchen"],
        ["month", "week", "spring"],
    ),
    (
        "Has trouble with {}",
        [
            "the billing portal",
            "the mobile app",
            "a late delivery",
            "a broken heater",
            "their insurance claim",
        ],
    ),
    (
        "Feels {} about {}",
        ["anxious", "excited", "frustrated"],
        ["the surgery", "the move", "the new job", "the refund"],
    ),
    ("Goes {} every {}", ["running", "swimming", "to the gym"], ["morning", "weekend"]),
    (
        "Booked a {} for {}",
        ["dentist appointment", "boiler service", "car repair"],
        ["Tuesday", "Friday", "the 14th", "next Monday"],
    ),
    ("Daughter {} is {} years old", ["Emma", "Sofia", "Mia"], ["4", "9", "15"]),
    ("Drives a {}", ["Toyota Corolla", "Ford Focus", "Tesla Model 3", "bicycle"]),
]
_QUESTIONS = [
    "where does the caller live",
    "what pets do they have",
    "any allergies",
    "when do they like appointments",
    "how should we contact them",
    "what food do they like",
    "what are they planning",
    "what problems did they report",
    "how are they feeling",
    "what exercise do they do",
    "what did they book",
    "tell me about their family",
    "what car do they drive",
    "what is their job",
    # What was said, rather than what was extracted.
    "what did they say about the bill",
    "when is the engineer coming",
    "did they confirm the new appointment time",
    "what is their date of birth",
    "why did they call last time",
    "what did we promise to do for them",
]


def _bank() -> list[tuple[str, str, str]]:
    """Every sentence of the templates: (content, sector, kind)."""
    sectors = {
        "Feels": ("emotional", "feeling"),
        "Booked": ("episodic", "event"),
        "Goes": ("procedural", "habit"),
        "Plans": ("episodic", "plan"),
        "Prefers": ("semantic", "preference"),
        "Likes": ("semantic", "preference"),
        "Has trouble": ("episodic", "problem"),
    }
    out = []
    for template, *slots in _FACTS:
        assert isinstance(template, str)
        sector, kind = next(
            (v for k, v in sectors.items() if template.startswith(k)), ("semantic", "fact")
        )
        combos: list[tuple[str, ...]] = [()]
        for values in slots:
            combos = [(*c, v) for c in combos for v in values]
        out += [(template.format(*c), sector, kind) for c in combos]
    return out


# Passages: exchanges between the agent and the caller ("user", the turns' role), each a
# few turns with named slots; every slot filled the same way in all its turns.
_Exchange = tuple[tuple[tuple[str, str], ...], dict[str, list[str]]]

_REASONS = [
    "my appointment next week",
    "a bill I got last month",
    "the heater that stopped working",
    "my insurance claim",
    "a delivery that never arrived",
    "my prescription refill",
    "logging in to the app",
    "changing my address",
    "my car's service",
    "a leak under the kitchen sink",
]
_BUSINESSES = [
    "Bayview Dental",
    "Northside Clinic",
    "Harbor Insurance",
    "Greenline Energy",
    "Metro Auto Repair",
    "City Plumbing",
]
_AGENTS = ["Ava", "Sam", "Priya", "Tom"]
_NAMES = ["Maria", "James", "Aisha", "Daniel", "Chen", "Sophie", "Omar"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "next Monday"]

_OPENINGS: list[_Exchange] = [
    (
        (
            ("agent", "Thanks for calling {business}, this is {agent}. How can I help you today?"),
            ("user", "Hi {agent}, I'm calling about {reason}."),
        ),
        {"business": _BUSINESSES, "agent": _AGENTS, "reason": _REASONS},
    ),
    (
        (
            ("agent", "Good {daypart}, {business}, {agent} speaking."),
            ("user", "Oh hi, yes, um, I wanted to ask about {reason}."),
            ("agent", "Of course, I can help with that."),
        ),
        {
            "daypart": ["morning", "afternoon"],
            "business": _BUSINESSES,
            "agent": _AGENTS,
            "reason": _REASONS,
        },
    ),
]
_TOPICS: list[_Exchange] = [
    (
        (
            ("agent", "Before we start, can you confirm your date of birth for me?"),
            ("user", "Sure, it's {month} {day}, {year}."),
            ("agent", "Thank you, I've found your account."),
        ),
        {
            "month": ["March", "July", "October", "January"],
            "day": ["third", "14th", "21st", "ninth"],
            "year": ["1958", "1972", "1988", "1995"],
        },
    ),
    (
        (
            ("agent", "Could you confirm the first line of your address?"),
            ("user", "It's {number} {street}."),
            ("agent", "Perfect, that matches what we have."),
        ),
        {
            "number": ["12", "48", "7", "230"],
            "street": ["Elm Street", "Harbour Road", "Maple Avenue", "Church Lane", "Oak Drive"],
        },
    ),
    (
        (
            ("agent", "Can I take your full name, please?"),
            ("user", "It's {first} {last}, that's {spelled}."),
            ("agent", "Thank you, {first}."),
        ),
        {
            "first": _NAMES,
            "last": ["Lopez", "Okafor", "Nguyen", "Brennan"],
            "spelled": ["with a double L", "all one word", "spelled the usual way"],
        },
    ),
    (
        (
            ("agent", "I can see your {service} on {day} at {time}. When would suit you better?"),
            ("user", "{new} {part}, if you have anything."),
            ("agent", "I have {new} at {new_time}. Does that work for you?"),
            ("user", "Yes, {new} at {new_time} is perfect."),
        ),
        {
            "service": ["cleaning", "check-up", "boiler service", "MOT", "consultation"],
            "day": ["Monday", "Tuesday", "Wednesday"],
            "time": ["9:30", "11", "2 PM"],
            "new": ["Thursday", "Friday", "next Monday"],
            "part": ["morning", "afternoon", "after work"],
            "new_time": ["10 AM", "2 PM", "4:30"],
        },
    ),
    (
        (
            ("user", "I was charged {amount} twice on my {month} statement."),
            (
                "agent",
                "I'm sorry about that. I can see the duplicate charge, I'll refund the"
                " {amount} within {n} working days.",
            ),
            ("user", "Okay, great, thank you."),
        ),
        {
            "amount": ["$45", "$120", "$89.99", "$310"],
            "month": ["March", "April", "last"],
            "n": ["three", "five", "ten"],
        },
    ),
    (
        (
            ("user", "Why is my bill so much higher this {period}?"),
            ("agent", "It looks like {cause}."),
            ("user", "{reaction}"),
        ),
        {
            "period": ["month", "quarter"],
            "cause": [
                "your introductory discount ended in May",
                "we used an estimated reading because we couldn't get to the meter",
                "your direct debit failed last month, so two months are on this bill",
                "there's a late payment fee of $25",
            ],
            "reaction": [
                "Ah, okay, that makes sense.",
                "Nobody told me about that, can you take the fee off?",
                "Can you send me a breakdown by email?",
            ],
        },
    ),
    (
        (
            ("user", "The {thing} has been {symptom} since {when}."),
            ("agent", "I'm sorry to hear that. Have you tried {fix}?"),
            ("user", "{tried}"),
            ("agent", "Okay, I'll book an engineer to come out on {day} between {window}."),
        ),
        {
            "thing": ["heater", "boiler", "dishwasher", "washing machine", "car"],
            "symptom": ["making a banging noise", "leaking", "not turning on", "cutting out"],
            "when": ["Monday", "the weekend", "last week"],
            "fix": ["turning it off and on again", "resetting the pressure", "checking the fuse"],
            "tried": [
                "Yes, I tried that and it didn't help.",
                "No, I haven't, I'll give it a go.",
                "I did, it worked for an hour and then stopped again.",
            ],
            "day": _DAYS,
            "window": ["8 and 12", "12 and 4", "9 and 1"],
        },
    ),
    (
        (
            ("user", "My order {order} was supposed to arrive on {day} but it never came."),
            ("agent", "Let me check. It shows as {status}."),
            ("user", "{reaction}"),
        ),
        {
            "order": ["4471", "A-2093", "88120", "ending 552"],
            "day": _DAYS,
            "status": [
                "delivered to a neighbour at number 14",
                "held at the depot because of a wrong postcode",
                "out for delivery today",
                "lost in transit, so I'll send a replacement",
            ],
            "reaction": [
                "That's strange, I was home all day.",
                "Okay, can you redeliver it tomorrow?",
                "Thank you, I'd rather have a refund.",
            ],
        },
    ),
    (
        (
            ("user", "I need a refill of my {drug}, I've only got {n} days left."),
            (
                "agent",
                "I've sent the request to Dr. {doctor}; it should be ready at the {pharmacy}"
                " pharmacy by {day}.",
            ),
            ("user", "Thanks, that's a relief."),
        ),
        {
            "drug": ["blood pressure tablets", "inhaler", "metformin", "thyroid medication"],
            "n": ["two", "three", "five"],
            "doctor": ["Patel", "Morgan", "Kim"],
            "pharmacy": ["High Street", "Riverside", "Westgate"],
            "day": _DAYS,
        },
    ),
    (
        (
            ("agent", "How would you like us to contact you about this?"),
            ("user", "{preference}"),
            ("agent", "Noted, I've updated your contact preferences."),
        ),
        {
            "preference": [
                "A text message is best, I'm usually at work.",
                "Email please, I don't always pick up the phone.",
                "Just call me, but not before ten in the morning.",
                "Text is fine, or email at a pinch.",
            ]
        },
    ),
    (
        (
            ("user", "I work {shift} as a {job}, so {constraint}."),
            ("agent", "Understood, I'll make a note of that on your file."),
        ),
        {
            "shift": ["nights", "early shifts", "weekends"],
            "job": ["nurse", "teacher", "bus driver", "chef", "warehouse supervisor"],
            "constraint": [
                "mornings are really hard for me",
                "I can only do late afternoons",
                "weekdays are better",
            ],
        },
    ),
    (
        (
            ("user", "Can I bring my {relation} {name}? She's {age} and {need}."),
            ("agent", "Of course, {name} is very welcome."),
        ),
        {
            "relation": ["daughter", "mother", "granddaughter"],
            "name": ["Emma", "Sofia", "Mia", "Grace"],
            "age": ["4", "9", "15", "82"],
            "need": ["gets nervous", "needs a wheelchair", "has her own appointment too"],
        },
    ),
    (
        (
            ("user", "Just so you know, I'm allergic to {allergen}."),
            ("agent", "Thanks for telling me, I've added the {allergen} allergy to your notes."),
            ("user", "Great, last time nobody knew about it."),
        ),
        {"allergen": ["penicillin", "latex", "peanuts", "ibuprofen", "shellfish"]},
    ),
    (
        (
            ("user", "We're moving to {city} next {period}, so I'll need to {action}."),
            ("agent", "Congratulations! Once you have the new address I can {reply}."),
        ),
        {
            "city": ["Leeds", "Manchester", "Austin", "Denver", "Porto"],
            "period": ["month", "spring", "week"],
            "action": ["move my account", "cancel the service", "find a new clinic"],
            "reply": ["update it straight away", "transfer everything for you"],
        },
    ),
    (
        (
            ("user", "Sorry, that's my {pet} {pet_name} in the background."),
            ("agent", "No problem at all, {pet_name} sounds lovely."),
        ),
        {"pet": ["dog", "cat", "parrot"], "pet_name": ["Biscuit", "Max", "Luna", "Pepper"]},
    ),
    (
        (
            ("agent", "Would you like to pay the {amount} today?"),
            ("user", "Yes, can I use the card ending {digits}?"),
            ("agent", "Done, the payment of {amount} has gone through."),
        ),
        {"amount": ["$45", "$120", "$89.99", "$310"], "digits": ["4412", "0937", "7781"]},
    ),
    (
        (
            ("user", "I sent the photos for claim {claim} on {day}, has anyone looked at them?"),
            ("agent", "Yes, the assessor reviewed them and {outcome}."),
            ("user", "{reaction}"),
        ),
        {
            "claim": ["CL-20931", "77410", "HX-5521"],
            "day": _DAYS,
            "outcome": [
                "approved the repair up to $2,000",
                "needs a quote from your garage",
                "asked for a photo of the other side",
            ],
            "reaction": [
                "Brilliant, thank you.",
                "I already sent a quote, can you check again?",
                "Okay, I'll send that tonight.",
            ],
        },
    ),
    (
        (
            ("user", "This is the {nth} time I've called about this, I'm getting really fed up."),
            (
                "agent",
                "I completely understand, and I'm sorry. I'm escalating this to my manager,"
                " {manager}, today.",
            ),
            ("user", "Okay. Please make sure someone calls me back {when}."),
        ),
        {
            "nth": ["third", "fourth", "fifth"],
            "manager": ["Rachel", "David", "Mohammed"],
            "when": ["today", "before Friday", "in the morning"],
        },
    ),
    (
        (
            ("user", "Sorry, could you repeat that? The line's a bit bad."),
            ("agent", "Of course. I said {repeat}."),
        ),
        {
            "repeat": [
                "the engineer will come on Thursday",
                "your refund will take five working days",
                "the appointment is at 2 PM",
                "we need your policy number",
            ]
        },
    ),
    (
        (
            ("agent", "Could you hold for a moment while I check with the {team} team?"),
            ("user", "Sure, no problem."),
            ("agent", "Thanks for holding. {result}"),
        ),
        {
            "team": ["billing", "technical", "claims", "scheduling"],
            "result": [
                "They've confirmed it's sorted.",
                "They'll call you back within 24 hours.",
                "They need a bit more information from you.",
            ],
        },
    ),
]
_FILLERS: list[tuple[str, str]] = [
    ("user", "Mm-hm."),
    ("user", "Okay."),
    ("user", "Right, yes."),
    ("user", "Uh, hang on a second."),
    ("user", "Yeah, yeah."),
    ("user", "Sorry, go on."),
    ("agent", "One moment please while I pull that up."),
    ("agent", "Bear with me a second."),
    ("agent", "Okay, let me just check that."),
    ("agent", "Got it."),
]
_CLOSINGS: list[_Exchange] = [
    (
        (
            ("agent", "Is there anything else I can help you with today?"),
            ("user", "No, that's everything. Thanks for your help."),
            ("agent", "You're welcome, {name}. Have a great {daypart}!"),
        ),
        {"name": _NAMES, "daypart": ["day", "evening", "weekend"]},
    ),
    (
        (
            ("agent", "Anything else, {name}?"),
            ("user", "No, that's all. Thanks!"),
            ("agent", "You're welcome. Speak soon!"),
        ),
        {"name": _NAMES},
    ),
]
# Filled instances per exchange: the bank's windows are embedded by the real model.
_INSTANCES = 12


@dataclass(frozen=True)
class _PassageBank:
    """Turns of filled exchanges: their role, COPY-escaped text, and window (embedded)."""

    roles: list[str]
    texts: list[str]
    windows: list[str]
    openings: list[tuple[list[int], str]]  # an opening's turns and the call's summary
    topics: list[list[int]]
    fillers: list[int]
    closings: list[list[int]]


def _passage_bank() -> _PassageBank:
    rnd = random.Random(11)
    bank = _PassageBank([], [], [], [], [], [], [])

    def add(turns: Sequence[tuple[str, str]]) -> list[int]:
        """One filled exchange; each turn's window is its neighbours in the exchange."""
        first = len(bank.roles)
        for i, (role, text) in enumerate(turns):
            bank.roles.append(role)
            bank.texts.append(copy_escape(text))
            nearby = turns[max(0, i - WINDOW) : i + 1 + WINDOW]
            bank.windows.append(" ".join(t for _, t in nearby))
        return list(range(first, len(bank.roles)))

    def fill(exchange: _Exchange) -> list[tuple[list[int], dict[str, str]]]:
        """Up to ``_INSTANCES`` different fillings of the exchange's slots."""
        turns, slots = exchange
        filled: dict[tuple[str, ...], dict[str, str]] = {}
        for _ in range(10 * _INSTANCES):
            values = {name: rnd.choice(choices) for name, choices in slots.items()}
            filled.setdefault(tuple(values.values()), values)
            if len(filled) == _INSTANCES:
                break
        return [
            (add([(role, t.format(**values)) for role, t in turns]), values)
            for values in filled.values()
        ]

    for exchange in _OPENINGS:
        bank.openings.extend(
            (turns, f"Called about {values['reason']}.") for turns, values in fill(exchange)
        )
    for exchange in _TOPICS:
        bank.topics.extend(turns for turns, _ in fill(exchange))
    for exchange in _CLOSINGS:
        bank.closings.extend(turns for turns, _ in fill(exchange))
    bank.fillers.extend(i for [i] in (add([turn]) for turn in _FILLERS))
    return bank


def _compose(rnd: random.Random, bank: _PassageBank) -> tuple[list[int], str]:
    """One call's turns (bank indexes) and its summary: an opening, one to four topics
    with an occasional filler before them, a closing."""
    opening, summary = rnd.choice(bank.openings)
    turns = list(opening)
    for _ in range(rnd.randint(1, 4)):
        if rnd.random() < 0.3:
            turns.append(rnd.choice(bank.fillers))
        turns += rnd.choice(bank.topics)
    turns += rnd.choice(bank.closings)
    return turns, summary


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    sizes = [ctx.scaled(n) for n in SIZES]
    limit = os.environ.get("MEMSTREAM_BENCH_QUERY_MAX")
    if limit:
        sizes = [n for n in sizes if n <= int(limit)]
    embedder = LocalEmbedder()
    bank = _bank()
    bank_vectors = np.asarray(embedder.embed([text for text, _, _ in bank]), dtype=np.float32)
    passage_bank = _passage_bank()
    windows = list(dict.fromkeys(passage_bank.windows))  # each different one once
    embedded = np.asarray(embedder.embed(windows), dtype=np.float32)
    passage_vectors = embedded[[windows.index(w) for w in passage_bank.windows]]
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as db:
        await tenants.create_tenant(db, TENANT, "Bench", default_region="US")
        token = (await tenants.issue_api_key(db, TENANT)).token
        for projection in (MemoriesProjection(), EmbeddingsProjection(), ConversationsProjection()):
            await versions.register(db, projection, 1)
    rng = np.random.default_rng(7)
    # Passages draw from their own generators: the memories are those of the sizes before.
    talk = _Talk(passage_bank, passage_vectors, np.random.default_rng(8), random.Random(9))
    users: list[str] = []
    loaded = passages = talkers = 0
    max_passages = ctx.scaled(MAX_PASSAGES)
    figures: list[Figure] = []
    for size in sizes:
        began = time.perf_counter()
        async with await AsyncConnection.connect(settings.require_database()) as conn:
            # Loading into a maintained HNSW index is the slow path the projection avoids
            # too: drop it, load, build it again (as a rebuild does).
            await _drop_index(conn)
            new_users, added, with_passages = await _load(
                conn,
                rng,
                bank,
                bank_vectors,
                talk,
                size - loaded,
                len(users),
                max_passages - passages,
            )
            users += new_users
            passages += added
            talkers += with_passages
            await _vacuum(settings)
            await _build_index(conn)
        loaded = size
        logger.info(
            "loaded %d memories, %d passages, %d users in %.0f s",
            size,
            passages,
            len(users),
            time.perf_counter() - began,
        )
        async with _query_service(settings) as base:
            figures += await _measure(ctx, base, token, users, size, passages, talkers)
        figures += await _recall(ctx, settings, embedder, size)
    return figures


@dataclass(frozen=True)
class _Talk:
    """What passages are made of: the bank, its windows' vectors, the generators."""

    bank: _PassageBank
    vectors: np.ndarray
    rng: np.random.Generator
    rnd: random.Random


@dataclass(frozen=True)
class _Call:
    subject: str
    conversation_id: str
    started_at: datetime
    turns: list[int]
    """Its passages, in order: indexes into the passage bank."""
    summary: str

    @property
    def ended_at(self) -> datetime:
        return self.started_at + timedelta(seconds=TURN_SECONDS * len(self.turns))


TURN_SECONDS = 8


def _calls(talk: _Talk, subject: str, passages: int) -> list[_Call]:
    """A user's calls holding ``passages`` passages; three calls without any if none."""
    if not passages:
        return [
            _Call(
                subject,
                f"{subject}-call-{c}",
                BASE_TIME + timedelta(days=120 * c + 1),
                [],
                f"Called about an appointment ({c}).",
            )
            for c in range(3)
        ]
    calls: list[_Call] = []
    while passages > 0:
        turns, summary = _compose(talk.rnd, talk.bank)
        turns = turns[:passages]
        passages -= len(turns)
        at = BASE_TIME + timedelta(days=talk.rnd.uniform(0, 365))
        calls.append(_Call(subject, f"{subject}-call-{len(calls)}", at, turns, summary))
    return calls


async def _load(
    conn: AsyncConnection[Any],
    rng: np.random.Generator,
    bank: list[tuple[str, str, str]],
    vectors: np.ndarray,
    talk: _Talk,
    total: int,
    first_user: int,
    passage_budget: int,
) -> tuple[list[str], int, int]:
    """``total`` more memories over new users, with their vectors, users and calls, and
    up to ``passage_budget`` passages with theirs (``PASSAGES_PER_MEMORY`` per memory of
    each user until the budget is spent). Returns the new users, the passages loaded and
    how many of the users have passages."""
    counts = _memories_per_user(rng, total)
    subjects = [f"{TENANT}/+1415{5_000_000 + first_user + i:07d}" for i in range(len(counts))]
    model, dimension = LocalEmbedder.name, LocalEmbedder.dimension
    memories, embeddings, users, calls = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
    spoken: list[_Call] = []
    buffered = loaded = talkers = 0
    for subject, count in zip(subjects, counts, strict=True):
        if buffered >= _COPY_CHUNK:  # bounded memory at a million rows
            await _flush(conn, memories, embeddings, users, calls)
            memories, embeddings, users, calls = (io.StringIO() for _ in range(4))
            buffered = 0
        buffered += count
        passages = min(count * PASSAGES_PER_MEMORY, passage_budget - loaded)
        loaded += passages
        talkers += passages > 0
        user_calls = _calls(talk, subject, passages)
        spoken += (c for c in user_calls if c.turns)
        picks = rng.integers(0, len(bank), count)
        noisy = vectors[picks] + rng.normal(0, NOISE, (count, vectors.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        days = rng.uniform(0, 365, count)
        for pick, vector, day in zip(picks, noisy, days, strict=True):
            content, sector, kind = bank[pick]
            memory_id = uuid.uuid4()
            at = (BASE_TIME + timedelta(days=float(day))).isoformat()
            salience = round(float(rng.uniform(0.3, 0.95)), 3)
            # Extracted from something the caller said in one of their calls.
            call = talk.rnd.choice(user_calls)
            said = [seq for seq, t in enumerate(call.turns) if talk.bank.roles[t] == "user"]
            turn = talk.rnd.choice(said) if said else 1
            memories.write(
                f"{TENANT}\t{memory_id}\t{subject}\t{content}\t{sector}\t{salience}\t"
                f"{DECAY_PER_DAY[sector]}\tactive\t{kind}\textracted\trules\t1\t"
                f"{call.conversation_id}\t"
                f'[{{"conversation_id": "{call.conversation_id}", "turns": [{turn}]}}]\t'
                f"0\t{at}\t{at}\t{at}\t{at[:10]}\n"
            )
            text = "[" + ",".join(f"{x:.6f}" for x in vector) + "]"
            embeddings.write(
                f"{TENANT}\t{memory_id}\t{model}\t{subject}\t{dimension}\t{text}\t{at}\n"
            )
        first = min(c.started_at for c in user_calls).isoformat()
        last = max(max(c.ended_at for c in user_calls), BASE_TIME + timedelta(days=365)).isoformat()
        phone = subject[len(TENANT) + 1 :]
        users.write(
            f"{TENANT}\t{subject}\t\\N\t{phone}\tCaller {subject[-4:]}\t"
            f"{first}\t{last}\t{len(user_calls)}\n"
        )
        for call in user_calls:
            started, ended = call.started_at.isoformat(), call.ended_at.isoformat()
            calls.write(
                f"{TENANT}\t{call.conversation_id}\t{subject}\tvapi\tended\t{started}\t"
                f"{ended}\t{call.summary}\t{ended}\n"
            )
    await _flush(conn, memories, embeddings, users, calls)
    # Passages as the projections write them: call after call as they end, all users'
    # calls interleaved (a user's passages are spread over the table, not side by side).
    spoken.sort(key=lambda c: (c.ended_at, c.conversation_id))
    chunk: list[_Call] = []
    rows = 0
    for call in spoken:
        chunk.append(call)
        rows += len(call.turns)
        if rows >= _COPY_CHUNK:
            await _copy_passages(conn, talk, chunk)
            chunk, rows = [], 0
    if chunk:
        await _copy_passages(conn, talk, chunk)
    await conn.commit()
    return [s[len(TENANT) + 1 :] for s in subjects], loaded, talkers


_TABLES = (
    ("memories", "memories"),
    ("embeddings", "embeddings"),
    ("embeddings", "passage_vectors"),
    ("conversations", "users"),
    ("conversations", "conversations"),
    ("conversations", "passages"),
)
_COPY_CHUNK = 50_000


async def _flush(
    conn: AsyncConnection[Any],
    memories: io.StringIO,
    embeddings: io.StringIO,
    users: io.StringIO,
    calls: io.StringIO,
) -> None:
    await _copy(
        conn,
        "memories",
        "memories",
        "tenant, memory_id, subject, content, sector, salience, decay_rate, state, kind,"
        " origin, extractor, extractor_version, conversation_id, provenance,"
        " reinforcement_count, observed_at, last_seen_at, updated_at, observed_on",
        memories,
    )
    await _copy(
        conn,
        "embeddings",
        "embeddings",
        "tenant, memory_id, model, subject, dimension, embedding, observed_at",
        embeddings,
    )
    await _copy(
        conn,
        "conversations",
        "users",
        "tenant, subject, user_id, phone, display_name, first_seen, last_seen, conversation_count",
        users,
    )
    await _copy(
        conn,
        "conversations",
        "conversations",
        "tenant, conversation_id, subject, platform, status, started_at, ended_at,"
        " summary, updated_at",
        calls,
    )


_PASSAGE_ROW_START = binary_row_start(8)  # passage_vectors' columns


async def _copy_passages(conn: AsyncConnection[Any], talk: _Talk, calls: list[_Call]) -> None:
    """The calls' passages (text ``COPY``) and their vectors (binary ``COPY``, as the
    embeddings projection stages them: pgvector's binary form, see ``_binary_vector``)."""
    bank = talk.bank
    model, dimension = LocalEmbedder.name, LocalEmbedder.dimension
    picks = np.fromiter((t for c in calls for t in c.turns), dtype=np.int64)
    noise = talk.rng.standard_normal((len(picks), dimension), dtype=np.float32) * NOISE
    noisy = talk.vectors[picks] + noise
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    packed = noisy.astype(">f4")  # float32, big-endian
    vector_head = struct.pack("!ihh", 4 + 4 * dimension, dimension, 0)
    assert vector_head + packed[0].tobytes() == _binary_vector(noisy[0].tolist())
    tenant, model_field = binary_bytes(TENANT.encode()), binary_bytes(model.encode())
    dimension_field = binary_int4(dimension)
    text = io.StringIO()
    vectors = [BINARY_HEADER]
    row = 0
    for call in calls:
        conversation = binary_bytes(call.conversation_id.encode())
        subject = binary_bytes(call.subject.encode())
        observed_at = binary_timestamptz(call.ended_at)  # passages.embedded: the call's end
        said = [bank.texts[t] for t in call.turns]
        for seq, turn in enumerate(call.turns):
            spoken_at = (call.started_at + timedelta(seconds=TURN_SECONDS * seq)).isoformat()
            context = " ".join(
                (*said[max(0, seq - WINDOW) : seq], *said[seq + 1 : seq + 1 + WINDOW])
            )
            text.write(
                f"{TENANT}\t{call.conversation_id}\t{seq}\t{call.subject}\t{bank.roles[turn]}\t"
                f"{spoken_at}\t{said[seq]}\t{context}\n"
            )
            vectors.append(
                b"".join(
                    (
                        _PASSAGE_ROW_START,
                        tenant,
                        conversation,
                        binary_int4(seq),
                        model_field,
                        subject,
                        dimension_field,
                        vector_head,
                        packed[row].tobytes(),
                        observed_at,
                    )
                )
            )
            row += 1
    vectors.append(BINARY_TRAILER)
    await _copy(
        conn,
        "conversations",
        "passages",
        "tenant, conversation_id, seq, subject, role, spoken_at, text, context",
        text,
    )
    # Staged and inserted by the projection's own statements: the vectors go in as
    # `vector` and are stored as the table's halfvec by the insert's cast.
    schema = version_schema("embeddings", 1)
    async with conn.transaction():
        await conn.execute(
            sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
        )
        await conn.execute(_PASSAGE_STAGING_SQL)
        async with conn.cursor().copy(_PASSAGE_COPY_SQL) as copy:
            await copy.write(b"".join(vectors))
        await conn.execute(_PASSAGE_INSERT_SQL)


async def _vacuum(settings: Settings) -> None:
    """Vacuum and analyse the loaded tables, as autovacuum leaves a read model in use
    (hint bits set, visibility map, statistics): left to autovacuum, gigabytes of new
    rows would be vacuumed during the timed region."""
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as db:
        for projection, table in _TABLES:
            target = sql.Identifier(version_schema(projection, 1), table)
            await db.execute(sql.SQL("VACUUM (ANALYZE) {}").format(target))


async def _copy(
    conn: AsyncConnection[Any], projection: str, table: str, columns: str, rows: io.StringIO
) -> None:
    target = sql.Identifier(version_schema(projection, 1), table)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(columns))
    async with conn.cursor().copy(statement) as copy:
        await copy.write(rows.getvalue())


async def _drop_index(conn: AsyncConnection[Any]) -> None:
    name = hnsw_index_name(LocalEmbedder.name, LocalEmbedder.dimension)
    schema = version_schema(EmbeddingsProjection.name, 1)
    await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, name)))
    await conn.commit()


async def _build_index(conn: AsyncConnection[Any]) -> None:
    """The indexes the projections build once caught up, by their own code paths: the
    model's HNSW index (embeddings) and the index that finds a user's passages
    (conversations)."""
    for projection in (EmbeddingsProjection(), ConversationsProjection()):
        schema = version_schema(projection.name, 1)
        async with conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
            )
            await projection.caught_up(conn)


@asynccontextmanager
async def _query_service(settings: Settings) -> AsyncIterator[str]:
    """`memstream query` on a free port, ready; SIGTERM after."""
    port = closed_port()
    env = {
        **os.environ,
        **settings.to_env(),
        "MEMSTREAM_QUERY_PORT": str(port),
        "MEMSTREAM_METRICS_PORT": "0",
        "MEMSTREAM_LOG_LEVEL": "WARNING",
        # One key sends everything here: no rate limit in the way.
        "MEMSTREAM_QUERY_RATE_LIMIT": "100000",
        "MEMSTREAM_QUERY_RATE_BURST": "100000",
    }
    with tempfile.TemporaryDirectory(prefix="bench-query-") as scratch:
        log = Path(scratch) / "query.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli", "query", env=env, stdout=out, stderr=out
            )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                for _ in range(600):
                    if process.returncode is not None:
                        raise RuntimeError(f"memstream query exited: {log.read_text()[-2000:]}")
                    try:
                        if (await client.get("/health/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def _measure(
    ctx: BenchmarkContext,
    base: str,
    token: str,
    users: list[str],
    size: int,
    passages: int,
    talkers: int,
) -> list[Figure]:
    rnd = random.Random(size)
    headers = {"Authorization": f"Bearer {token}"}
    params: dict[str, Any] = {
        "memories": size,
        "passages": passages,
        "users": len(users),
        "users_with_passages": talkers,
        "limit": 10,
        "sources": "memories and passages (the default)",
        "timed": "HTTP request to response, query embedded inside",
    }
    memories_params = {**params, "sources": "memories"}
    only_memories = {"sources": ["memories"]}

    def search_body() -> dict[str, Any]:
        return {"user": rnd.choice(users), "query": rnd.choice(_QUESTIONS), "limit": 10}

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for _ in range(20):  # warm the pool, the model, the caches
            body = search_body()
            (await client.post("/v1/memories/search", json=body)).raise_for_status()
            body |= only_memories
            (await client.post("/v1/memories/search", json=body)).raise_for_status()
        # The same user and question for both, one after the other: the difference is
        # what searching passages costs.
        search_ms: list[float] = []
        memories_ms: list[float] = []
        for _ in range(REQUESTS):
            body = search_body()
            for timings, request in ((search_ms, body), (memories_ms, body | only_memories)):
                began = time.perf_counter()
                response = await client.post("/v1/memories/search", json=request)
                timings.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
        briefing_ms = []
        for _ in range(REQUESTS):
            began = time.perf_counter()
            response = await client.get(f"/v1/users/{rnd.choice(users)}/briefing")
            briefing_ms.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
        done = 0
        deadline = time.perf_counter() + SUSTAIN_S

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                (await client.post("/v1/memories/search", json=search_body())).raise_for_status()
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        rate = done / (time.perf_counter() - began)
    label = f"{size:,}"
    target = SEARCH_P95_TARGETS.get(size)
    return [
        ctx.figure(
            f"search p50 @ {label}", percentile(sorted(search_ms), 50), "ms", None, params=params
        ),
        ctx.figure(
            f"search p95 @ {label}",
            percentile(sorted(search_ms), 95),
            "ms",
            at_most(target) if target else None,
            params=params,
        ),
        ctx.figure(
            f"search memories only p50 @ {label}",
            percentile(sorted(memories_ms), 50),
            "ms",
            None,
            params=memories_params,
        ),
        ctx.figure(
            f"search memories only p95 @ {label}",
            percentile(sorted(memories_ms), 95),
            "ms",
            at_most(target) if target else None,
            params=memories_params,
        ),
        ctx.figure(
            f"search sustained @ {label}",
            rate,
            "req/s",
            None,
            params={**params, "concurrency": CONCURRENCY, "seconds": SUSTAIN_S},
        ),
        ctx.figure(
            f"briefing p95 @ {label}",
            percentile(sorted(briefing_ms), 95),
            "ms",
            at_most(BRIEFING_P95_TARGET),
            params={
                **{k: v for k, v in params.items() if k != "sources"},
                "timed": "HTTP request to response",
            },
        ),
    ]


async def _recall(
    ctx: BenchmarkContext, settings: Settings, embedder: LocalEmbedder, size: int
) -> list[Figure]:
    rnd = random.Random(size + 1)
    questions = [
        rnd.choice(_QUESTIONS) + " " + rnd.choice(_bank())[0]
        for _ in range(RECALL_QUERIES if size <= 100_000 else RECALL_QUERIES_LARGE)
    ]
    vectors = embedder.embed(questions)
    model, dimension = LocalEmbedder.name, LocalEmbedder.dimension
    query = sql.SQL(
        "SELECT memory_id FROM embeddings.embeddings WHERE model = {model}"
        " ORDER BY embedding::vector({d}) <=> %s::vector({d}) LIMIT 10"
    ).format(model=sql.Literal(model), d=sql.Literal(dimension))
    hits = 0
    async with await AsyncConnection.connect(settings.require_database()) as conn:
        plan = await (
            await conn.execute(
                sql.SQL("EXPLAIN ") + query, ["[" + ",".join(map(str, vectors[0])) + "]"]
            )
        ).fetchall()
        uses_hnsw = any("hnsw" in str(row[0]) for row in plan)
        for vector in vectors:
            text = "[" + ",".join(map(str, vector)) + "]"
            approximate = {r[0] for r in await (await conn.execute(query, [text])).fetchall()}
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off")
                exact = {r[0] for r in await (await conn.execute(query, [text])).fetchall()}
            hits += len(approximate & exact)
        await conn.rollback()
    recall = hits / (10 * len(vectors))
    return [
        ctx.figure(
            f"HNSW recall@10 @ {size:,}",
            recall,
            "",
            at_least(RECALL_TARGET),
            params={
                "queries": len(vectors),
                "planner_uses_hnsw": uses_hnsw,
                "ef_search": "40 (pgvector default)",
                "compared_with": "exact search, index scans off",
            },
        ),
    ]


@dataclass(frozen=True)
class LoadedTenant:
    """A tenant loaded for searches over HTTP (see :func:`load_search_tenant`)."""

    tokens: list[str]
    users: list[str]
    passages: int


async def load_search_tenant(settings: Settings, size: int, *, keys: int = 1) -> LoadedTenant:
    """The tenant's read models at `size` memories and their passages, loaded as this
    benchmark loads them (``COPY``, then vacuumed and indexed), its live versions
    registered, and `keys` API keys: what the benchmarks of a `memstream query` process
    search (bench_waits, bench_audit)."""
    embedder = LocalEmbedder()
    bank = _bank()
    bank_vectors = np.asarray(embedder.embed([text for text, _, _ in bank]), dtype=np.float32)
    passage_bank = _passage_bank()
    windows = list(dict.fromkeys(passage_bank.windows))
    embedded = np.asarray(embedder.embed(windows), dtype=np.float32)
    passage_vectors = embedded[[windows.index(w) for w in passage_bank.windows]]
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as db:
        await tenants.create_tenant(db, TENANT, "Bench", default_region="US")
        tokens = [(await tenants.issue_api_key(db, TENANT)).token for _ in range(keys)]
        for projection in (MemoriesProjection(), EmbeddingsProjection(), ConversationsProjection()):
            await versions.register(db, projection, 1)
    talk = _Talk(passage_bank, passage_vectors, np.random.default_rng(8), random.Random(9))
    async with await AsyncConnection.connect(settings.require_database()) as conn:
        await _drop_index(conn)
        users, passages, _ = await _load(
            conn,
            np.random.default_rng(7),
            bank,
            bank_vectors,
            talk,
            size,
            0,
            size * PASSAGES_PER_MEMORY,
        )
        await _vacuum(settings)
        await _build_index(conn)
    return LoadedTenant(tokens, users, passages)


def search_body(users: Sequence[str], rnd: random.Random) -> dict[str, Any]:
    """A default search (memories and passages) for a random user and question."""
    return {"user": rnd.choice(users), "query": rnd.choice(_QUESTIONS), "limit": 10}


async def timed_searches(
    base: str, token: str, users: Sequence[str], rnd: random.Random, count: int, warm_up: int
) -> list[float]:
    """Milliseconds of each of `count` sequential searches (after `warm_up` not timed)."""
    headers = {"Authorization": f"Bearer {token}"}
    timings: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for i in range(warm_up + count):
            body = search_body(users, rnd)
            began = time.perf_counter()
            response = await client.post("/v1/memories/search", json=body)
            elapsed = (time.perf_counter() - began) * 1000
            response.raise_for_status()
            if i >= warm_up:
                timings.append(elapsed)
    return timings
