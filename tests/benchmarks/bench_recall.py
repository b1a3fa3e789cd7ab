"""Recall: do the memories (and passages) a search returns hold what was said?

Over the recall corpus (tests/benchmarks/recall_corpus/, see its README): scripted
voice calls (``callers_*.json``) and long two-person conversations (``long_*.json``),
each with questions whose evidence is a list of turns and whose answer is a list of
keywords. Two halves: *tune* (weights may be tuned on it) and *report* (never looked
at while tuning). ``MEMSTREAM_RECALL_CORPUS`` names another directory of such files.

1. `memstream run` (ingest, every projection and processor, with the offline defaults:
   rule-based extraction, the local embedding model unless ``MEMSTREAM_LLM_MODEL`` /
   ``MEMSTREAM_EMBEDDING_MODEL`` say otherwise) and `memstream query`, each its own
   process, on the benchmark's own topics and database.
2. Every call is posted, signed, to its platform's real webhook route as that
   platform's body (built from tests/unit/ingest_payloads): ElevenLabs
   `post_call_transcription`, Vapi `end-of-call-report`, Retell `call_analyzed`; the
   caller's number is the platform's caller-number field, so the subject is the phone
   (a corpus number no phone plan assigns, such as +1 555 ..., which memstream files
   as an anonymous caller, is replaced by a valid stand-in, counted in the figures'
   conditions); the conversation id is ``<caller id>-<call id>``. One corpus turn is
   one transcript message, so the read model's turn ``seq`` is the corpus turn index:
   the Vapi report is sent without the system-prompt message a live assistant puts
   first (it would be turn 0). Every session of a long conversation is posted to
   ``POST /v1/events`` as a ``conversation.ended`` whose subject is the conversation's
   user id (its corpus id) and whose start is the session's date. Turn offsets and
   durations are synthetic (about 2.6 words a second).
3. Processing is over when every projection's live version has no lag and the counts
   of conversations, turns and memories have not moved between two polls. Then every
   conversation's turns are read back (``conversations.turns``) and compared with the
   corpus, subject, role and text turn by turn: any difference fails the benchmark.
4. Each question is asked through ``POST /v1/memories/search`` (``limit`` 10) for its
   caller or user three times: ``"sources": ["memories"]``, ``["passages"]`` and
   without sources (fused). A server that refuses ``sources`` (422) is asked once,
   without: its answer is reported as *fused* (memories only).
5. Scores. A result covers the turns its ``provenance`` lists. *Evidence recall@k*: the
   share of a question's evidence turns covered by the top k results, averaged over
   questions. *Answer hit@5*: the top 5 results' texts (each its content and the texts
   of its context turns), read together as an agent reads them, contain every answer
   keyword, case-insensitive (a nested list is alternatives); *in one result*: one of
   them contains every keyword (stricter: a multi-hop answer is in two turns). *Stale
   rate* (kind ``changed``): a result containing a superseded value ranks above the
   first result containing the answer, or only the superseded value is found. Search
   latency is the HTTP request to its response, the question embedded inside, after 10
   unmeasured warm-up searches. The *BM25 baseline*
   (Okapi, k1 1.2, b 0.75, lower-cased words without English stop words) ranks the
   user's raw turns, each its own document, in this process, no server involved.

Figures per half and corpus, for each way of searching; the targets (fused evidence
recall@10 >= 0.85, fused answer hit@5 >= 0.90) are on each half, both corpora pooled
over their questions. ``MEMSTREAM_RECALL_DUMP=path.json`` writes every question's
result (ranks, scores, the top results) for tuning.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import logging
import math
import os
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from psycopg import AsyncConnection

from projections import PROJECTIONS
from schemas import ConversationEnded, Source, derived_event_id, encode_event
from services import tenants
from services.identity import normalise_phone
from services.ingest.signatures import sign_elevenlabs, sign_retell
from services.settings import Settings
from streams import versions
from streams.topics import ensure_topics
from tests.benchmarks.bench_ingest import PAYLOADS, _ingest_service
from tests.benchmarks.bench_query import _query_service
from tests.benchmarks.harness import BenchmarkContext, Figure, Target, at_least, percentile

logger = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).resolve().parent / "recall_corpus"
CORPUS_FILES = ("callers_tune.json", "callers_report.json", "long_tune.json", "long_report.json")
HALVES = ("tune", "report")
CORPORA = ("callers", "long")
PLATFORMS = ("elevenlabs", "vapi", "retell")
ROLES = ("user", "agent")

TENANT = "recall"
SECRETS = {
    "elevenlabs": "wsec_recall_elevenlabs_0123456789",
    "vapi": "vapi_recall_secret_0123456789",
    "retell": "key_recall_retell_0123456789ab",
}
AGENT_NUMBER = "+14155550100"

LIMIT = 10
WARMUP_SEARCHES = 10
RECALL_TARGET = 0.85
HIT_TARGET = 0.90
POLL_S = 2.0
PROCESSING_TIMEOUT_S = 1800.0

#: A keyword, or alternatives of which any one will do.
Keyword = str | tuple[str, ...]
#: A turn of a conversation: (memstream conversation id, seq).
TurnRef = tuple[str, int]
Result = Mapping[str, Any]


# -- the corpus -------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    role: str  # "user" (the caller, the subject) or "agent"
    text: str


@dataclass(frozen=True)
class Conversation:
    id: str  # memstream's conversation id: "<caller or conversation id>-<call or session id>"
    corpus_id: str  # the call's or session's id in the corpus
    platform: str  # elevenlabs | vapi | retell | events (POST /v1/events)
    started_at: datetime
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    evidence: tuple[TurnRef, ...]
    answers: tuple[Keyword, ...]
    stale: tuple[Keyword, ...]
    kind: str


@dataclass(frozen=True)
class Dialogue:
    """One subject: a caller and their calls, or a long conversation and its sessions."""

    corpus: str  # "callers" | "long"
    half: str  # "tune" | "report"
    key: str  # the caller's or long conversation's corpus id
    name: str  # who the subject is
    user: str  # what search calls them: an E.164 number (callers) or a user id (long)
    phone: str | None  # the caller's number as the corpus gives it (callers only)
    conversations: tuple[Conversation, ...]
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Corpus:
    name: str  # "callers" | "long"
    half: str
    dialogues: tuple[Dialogue, ...]


def _keywords(raw: Any, where: str) -> tuple[Keyword, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: must be a list of keywords")
    out: list[Keyword] = []
    for item in raw:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list) and item and all(isinstance(a, str) for a in item):
            out.append(tuple(item))
        else:
            raise ValueError(f"{where}: {item!r} is neither a keyword nor a list of them")
    return tuple(out)


def _turns(raw: Any, where: str) -> tuple[Turn, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}.turns: must be a non-empty list")
    turns = []
    for index, turn in enumerate(raw):
        role, text = turn.get("role"), turn.get("text")
        if role not in ROLES or not isinstance(text, str):
            raise ValueError(f"{where}.turns[{index}]: needs a role in {ROLES} and a text")
        turns.append(Turn(role, text))
    return tuple(turns)


def _instant(raw: Any, where: str) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(f"{where}: must be an ISO 8601 date and time")
    parsed = datetime.fromisoformat(raw)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _questions(
    raw: Any, where: str, conversations: Mapping[str, Conversation], prefix: str
) -> tuple[Question, ...]:
    questions = []
    for q in raw or []:
        qwhere = f"{where}.questions[{q.get('id')}]"
        evidence: list[TurnRef] = []
        for ref in q.get("evidence") or []:
            call_id, index = ref
            conversation = conversations.get(call_id)
            if (
                conversation is None
                or not isinstance(index, int)
                or not 0 <= index < len(conversation.turns)
            ):
                raise ValueError(f"{qwhere}: evidence {ref} names no turn of the corpus")
            evidence.append((f"{prefix}-{call_id}", int(index)))
        questions.append(
            Question(
                id=str(q["id"]),
                question=str(q["question"]),
                evidence=tuple(evidence),
                answers=_keywords(q.get("answers"), f"{qwhere}.answers"),
                stale=_keywords(q.get("stale"), f"{qwhere}.stale"),
                kind=str(q.get("kind") or "fact"),
            )
        )
    if len({q.id for q in questions}) != len(questions):
        raise ValueError(f"{where}: question ids repeat")
    return tuple(questions)


def parse_corpus(document: Mapping[str, Any], *, name: str = "") -> Corpus:
    """A corpus file's content (``callers`` or ``conversations``), checked: every evidence
    turn exists, ids are unique. A caller's ``user`` is their number in E.164 (empty when
    it is no valid number: see :func:`assign_stand_ins`)."""
    half = str(document.get("half") or "")
    if "callers" in document:
        dialogues = [_caller(raw, half, name) for raw in document["callers"]]
        corpus = "callers"
    elif "conversations" in document:
        dialogues = [_long(raw, half, name) for raw in document["conversations"]]
        corpus = "long"
    else:
        raise ValueError(f"{name}: neither `callers` nor `conversations`")
    if len({d.key for d in dialogues}) != len(dialogues):
        raise ValueError(f"{name}: ids repeat")
    return Corpus(corpus, half, tuple(dialogues))


def _caller(raw: Mapping[str, Any], half: str, name: str) -> Dialogue:
    key = str(raw["id"])
    where = f"{name}:{key}"
    by_id: dict[str, Conversation] = {}
    for call in raw["calls"]:
        call_id = str(call["id"])
        platform = call.get("platform")
        if platform not in PLATFORMS:
            raise ValueError(f"{where}.{call_id}: platform must be one of {PLATFORMS}")
        if call_id in by_id:
            raise ValueError(f"{where}: call id {call_id} repeats")
        by_id[call_id] = Conversation(
            id=f"{key}-{call_id}",
            corpus_id=call_id,
            platform=platform,
            started_at=_instant(call.get("started_at"), f"{where}.{call_id}.started_at"),
            turns=_turns(call.get("turns"), f"{where}.{call_id}"),
        )
    phone = str(raw["phone"])
    return Dialogue(
        corpus="callers",
        half=half,
        key=key,
        name=str(raw.get("name") or ""),
        user=normalise_phone(phone) or "",
        phone=phone,
        conversations=tuple(sorted(by_id.values(), key=lambda c: c.started_at)),
        questions=_questions(raw.get("questions"), where, by_id, key),
    )


def _long(raw: Mapping[str, Any], half: str, name: str) -> Dialogue:
    key = str(raw["id"])
    where = f"{name}:{key}"
    by_id: dict[str, Conversation] = {}
    for session in raw["sessions"]:
        session_id = str(session["id"])
        if session_id in by_id:
            raise ValueError(f"{where}: session id {session_id} repeats")
        by_id[session_id] = Conversation(
            id=f"{key}-{session_id}",
            corpus_id=session_id,
            platform="events",
            started_at=_instant(session.get("date"), f"{where}.{session_id}.date"),
            turns=_turns(session.get("turns"), f"{where}.{session_id}"),
        )
    return Dialogue(
        corpus="long",
        half=half,
        key=key,
        name=str(raw.get("user") or ""),
        user=key,
        phone=None,
        conversations=tuple(sorted(by_id.values(), key=lambda c: c.started_at)),
        questions=_questions(raw.get("questions"), where, by_id, key),
    )


def stand_in_phone(index: int) -> str:
    """A valid US number for the ``index``-th caller whose corpus number is none."""
    if not 0 <= index < 9_000:
        raise ValueError("at most 9,000 stand-in numbers")
    return f"+1415555{1_000 + index:04d}"


def assign_stand_ins(dialogues: Sequence[Dialogue]) -> tuple[list[Dialogue], int]:
    """Callers whose number memstream cannot place (``user`` empty) get a valid stand-in
    (else each of their calls would be a subject of its own); also how many did."""
    taken = {d.user for d in dialogues}
    out: list[Dialogue] = []
    index = 0
    for dialogue in dialogues:
        if dialogue.user:
            out.append(dialogue)
            continue
        while (phone := stand_in_phone(index)) in taken:
            index += 1
        taken.add(phone)
        out.append(dataclasses.replace(dialogue, user=phone))
    users = [d.user for d in out]
    if len(set(users)) != len(users):
        raise ValueError("two dialogues of the corpus have the same user")
    return out, sum(1 for d in dialogues if not d.user)


def take(dialogues: Sequence[Dialogue], scale: float) -> list[Dialogue]:
    """The first ``scale`` of the dialogues (at least one), for a run at small scale."""
    if scale >= 1:
        return list(dialogues)
    return list(dialogues[: max(1, round(len(dialogues) * scale))])


# -- scoring ----------------------------------------------------------------------------


def result_text(result: Result) -> str:
    """What a result says: its content, and the texts of its context turns (passages)."""
    parts = [str(result.get("content") or "")]
    for turn in result.get("context") or ():
        if isinstance(turn, Mapping):
            parts.append(str(turn.get("text") or ""))
    return "\n".join(parts)


def result_turns(result: Result) -> set[TurnRef]:
    """The turns a result covers: those its provenance lists."""
    covered: set[TurnRef] = set()
    for source in result.get("provenance") or ():
        if isinstance(source, Mapping):
            conversation = str(source.get("conversation_id"))
            covered.update((conversation, int(seq)) for seq in source.get("turns") or ())
    return covered


def covered_turns(results: Sequence[Result], k: int) -> set[TurnRef]:
    covered: set[TurnRef] = set()
    for result in results[:k]:
        covered |= result_turns(result)
    return covered


def evidence_recall(evidence: Sequence[TurnRef], results: Sequence[Result], k: int) -> float:
    """Share of the evidence turns the top ``k`` results cover (1.0 without evidence)."""
    wanted = set(evidence)
    if not wanted:
        return 1.0
    return len(wanted & covered_turns(results, k)) / len(wanted)


def first_evidence_rank(evidence: Sequence[TurnRef], results: Sequence[Result]) -> int | None:
    """1-based rank of the first result covering an evidence turn."""
    wanted = set(evidence)
    return next((r for r, res in enumerate(results, 1) if result_turns(res) & wanted), None)


def contains_keywords(text: str, keywords: Sequence[Keyword]) -> bool:
    """Every keyword is in ``text`` (case-insensitive); of alternatives, any one."""
    folded = text.casefold()
    return all(
        any(a.casefold() in folded for a in ((k,) if isinstance(k, str) else k)) for k in keywords
    )


def contains_any(text: str, keywords: Sequence[Keyword]) -> bool:
    """Some keyword (or alternative) is in ``text`` (case-insensitive)."""
    folded = text.casefold()
    return any(
        a.casefold() in folded for k in keywords for a in ((k,) if isinstance(k, str) else k)
    )


def answer_rank(results: Sequence[Result], answers: Sequence[Keyword]) -> int | None:
    """1-based rank of the first result containing every answer keyword."""
    if not answers:
        return None
    return next(
        (r for r, res in enumerate(results, 1) if contains_keywords(result_text(res), answers)),
        None,
    )


def answered_within(results: Sequence[Result], answers: Sequence[Keyword], k: int) -> bool:
    """Every answer keyword is in the top ``k`` results, read together: what an agent
    given those results has (a multi-hop answer is in two turns, so in two results)."""
    return contains_keywords("\n".join(result_text(r) for r in results[:k]), answers)


def stale_rank(results: Sequence[Result], stale: Sequence[Keyword]) -> int | None:
    """1-based rank of the first result containing a superseded value."""
    if not stale:
        return None
    return next(
        (r for r, res in enumerate(results, 1) if contains_any(result_text(res), stale)), None
    )


def is_stale(
    results: Sequence[Result], answers: Sequence[Keyword], stale: Sequence[Keyword]
) -> bool:
    """A superseded value ranks above the first answer, or is found and the answer is not."""
    old = stale_rank(results, stale)
    if old is None:
        return False
    current = answer_rank(results, answers)
    return current is None or old < current


# English stop words (NLTK's list, the parts of contractions included: the tokenizer
# splits "don't" into "don" and "t").
_STOP_WORDS = """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what
    which who whom this that these those am is are was were be been being have has had
    having do does did doing a an the and but if or because as until while of at by for
    with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how
    all any both each few more most other some such no nor not only own same so than too
    very s t can will just don should now d ll m o re ve y ain aren couldn didn doesn
    hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased words (letters and digits), English stop words removed."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


class BM25:
    """Okapi BM25 over tokenized documents (idf ``ln(1 + (N - n + 0.5) / (n + 0.5))``)."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.frequencies = [Counter(doc) for doc in documents]
        self.lengths = [len(doc) for doc in documents]
        self.average = (sum(self.lengths) / len(self.lengths)) if documents else 0.0
        counts: Counter[str] = Counter()
        for frequency in self.frequencies:
            counts.update(frequency.keys())
        n = len(documents)
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in counts.items()}

    def scores(self, query: Sequence[str]) -> list[float]:
        terms = [t for t in dict.fromkeys(query) if t in self.idf]
        out = []
        for frequency, length in zip(self.frequencies, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / (self.average or 1.0))
            out.append(
                sum(
                    self.idf[t] * frequency[t] * (self.k1 + 1) / (frequency[t] + norm)
                    for t in terms
                    if t in frequency
                )
            )
        return out

    def top(self, query: Sequence[str], k: int) -> list[int]:
        """Indexes of the ``k`` best documents scoring above 0, best first (ties: first)."""
        scores = self.scores(query)
        ranked = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))
        return ranked[:k]


def bm25_results(dialogue: Dialogue, question: str, k: int = LIMIT) -> list[dict[str, Any]]:
    """The baseline's top ``k`` turns of the dialogue's user, as passage-shaped results."""
    refs = [(c, seq, turn) for c in dialogue.conversations for seq, turn in enumerate(c.turns)]
    index = BM25([tokenize(turn.text) for _, _, turn in refs])
    return [
        {
            "type": "passage",
            "content": refs[i][2].text,
            "provenance": [{"conversation_id": refs[i][0].id, "turns": [refs[i][1]]}],
        }
        for i in index.top(tokenize(question), k)
    ]


@dataclass(frozen=True)
class Score:
    """One question answered one way (a search mode, or the baseline)."""

    recall_5: float | None  # None: the question has no evidence
    recall_10: float | None
    hit_5: bool | None  # None: the question has no answer keywords
    hit_5_single: bool | None  # every keyword in one of the top 5 results
    stale: bool | None  # None: not a "changed" question with stale keywords
    first_evidence_rank: int | None
    answer_rank: int | None
    stale_rank: int | None
    latency_ms: float | None = None


def score(question: Question, results: Sequence[Result], latency_ms: float | None = None) -> Score:
    found = answer_rank(results, question.answers)
    has_evidence = bool(question.evidence)
    return Score(
        recall_5=evidence_recall(question.evidence, results, 5) if has_evidence else None,
        recall_10=evidence_recall(question.evidence, results, 10) if has_evidence else None,
        hit_5=answered_within(results, question.answers, 5) if question.answers else None,
        hit_5_single=(found is not None and found <= 5) if question.answers else None,
        stale=(
            is_stale(results, question.answers, question.stale)
            if question.kind == "changed" and question.stale
            else None
        ),
        first_evidence_rank=first_evidence_rank(question.evidence, results),
        answer_rank=found,
        stale_rank=stale_rank(results, question.stale),
        latency_ms=latency_ms,
    )


def mean(values: Iterable[float | bool | None]) -> float | None:
    """The mean of the values that are not None (None if there are none)."""
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


@dataclass(frozen=True)
class Summary:
    questions: int
    recall_5: float | None
    recall_10: float | None
    hit_5: float | None
    hit_5_single: float | None
    stale_rate: float | None
    stale_questions: int
    latency_p50: float | None
    latency_p95: float | None


def summarise(scores: Sequence[Score]) -> Summary:
    latencies = [s.latency_ms for s in scores if s.latency_ms is not None]
    return Summary(
        questions=len(scores),
        recall_5=mean(s.recall_5 for s in scores),
        recall_10=mean(s.recall_10 for s in scores),
        hit_5=mean(s.hit_5 for s in scores),
        hit_5_single=mean(s.hit_5_single for s in scores),
        stale_rate=mean(s.stale for s in scores),
        stale_questions=sum(1 for s in scores if s.stale is not None),
        latency_p50=percentile(latencies, 50) if latencies else None,
        latency_p95=percentile(latencies, 95) if latencies else None,
    )


# -- platform bodies --------------------------------------------------------------------

WORDS_PER_S = 2.6
PAUSE_S = 0.7


def turn_timing(turns: Sequence[Turn]) -> list[tuple[float, float]]:
    """Synthetic (start, end) seconds into the call of each turn: speech at about 2.6 words
    a second, 0.7 s between turns."""
    timing = []
    at = 0.5
    for turn in turns:
        spoken = max(0.6, len(turn.text.split()) / WORDS_PER_S)
        timing.append((round(at, 2), round(at + spoken, 2)))
        at += spoken + PAUSE_S
    return timing


def _duration_s(timing: Sequence[tuple[float, float]]) -> float:
    return round(timing[-1][1] + 1.0, 2) if timing else 1.0


def _template(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((PAYLOADS / f"{name}.json").read_bytes())
    return loaded


def _call_sid(conversation_id: str) -> str:
    return "CA" + hashlib.sha256(conversation_id.encode()).hexdigest()[:32]


def _iso_ms(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def elevenlabs_body(conversation: Conversation, phone: str) -> dict[str, Any]:
    """An ElevenLabs ``post_call_transcription`` of the conversation, from ``phone``."""
    document = _template("elevenlabs_post_call_transcription")
    data = document["data"]
    template = data["transcript"]
    shapes = {
        "agent": next(t for t in template if t["role"] == "agent" and t["message"]),
        "user": next(t for t in template if t["role"] == "user"),
    }
    timing = turn_timing(conversation.turns)
    duration = math.ceil(_duration_s(timing))
    start = int(conversation.started_at.timestamp())
    sid = _call_sid(conversation.id)
    data["conversation_id"] = conversation.id
    data["transcript"] = [
        {
            **copy.deepcopy(shapes[turn.role]),
            "message": turn.text,
            "time_in_call_secs": began,
            "feedback": None,
        }
        for turn, (began, _) in zip(conversation.turns, timing, strict=True)
    ]
    metadata = data["metadata"]
    metadata["start_time_unix_secs"] = metadata["accepted_time_unix_secs"] = start
    metadata["call_duration_secs"] = duration
    metadata["phone_call"].update(
        {"external_number": phone, "agent_number": AGENT_NUMBER, "call_sid": sid}
    )
    metadata["feedback"] = {"overall_score": None, "likes": 0, "dislikes": 0}
    # No summary or collected data: the platform's analysis is not what is measured.
    data["analysis"] = {
        "evaluation_criteria_results": {},
        "data_collection_results": {},
        "call_successful": "success",
        "transcript_summary": None,
        "call_summary_title": None,
    }
    data["conversation_initiation_client_data"]["dynamic_variables"] = {
        "system__agent_id": data["agent_id"],
        "system__caller_id": phone,
        "system__called_number": AGENT_NUMBER,
        "system__call_sid": sid,
        "system__conversation_id": conversation.id,
        "system__call_duration_secs": duration,
        "system__time_utc": conversation.started_at.astimezone(UTC).isoformat(),
    }
    document["event_timestamp"] = start + duration + 12
    return document


def vapi_body(conversation: Conversation, phone: str) -> dict[str, Any]:
    """A Vapi ``end-of-call-report`` of the conversation, from ``phone``; without the
    system-prompt message (it would be turn 0 and shift every turn's seq)."""
    document = _template("vapi_end_of_call_report")
    message = document["message"]
    timing = turn_timing(conversation.turns)
    duration = _duration_s(timing)
    start = conversation.started_at
    start_ms = start.timestamp() * 1000
    messages: list[dict[str, Any]] = []
    for turn, (began, ended) in zip(conversation.turns, timing, strict=True):
        entry: dict[str, Any] = {
            "role": "bot" if turn.role == "agent" else "user",
            "message": turn.text,
            "time": round(start_ms + began * 1000),
            "endTime": round(start_ms + ended * 1000),
            "secondsFromStart": began,
            "duration": round((ended - began) * 1000),
        }
        if turn.role == "agent":
            entry["source"] = ""
        else:
            entry["metadata"] = {"wordLevelConfidence": []}
        messages.append(entry)
    transcript = "".join(
        f"{'AI' if t.role == 'agent' else 'User'}: {t.text}\n" for t in conversation.turns
    )
    artifact = message["artifact"]
    artifact["messages"] = messages
    artifact["messagesOpenAIFormatted"] = [
        {"role": "assistant" if t.role == "agent" else "user", "content": t.text}
        for t in conversation.turns
    ]
    artifact["transcript"] = transcript
    message["messages"] = copy.deepcopy(messages)
    message["transcript"] = transcript
    ended_at = start + timedelta(seconds=duration)
    message["startedAt"] = message["call"]["startedAt"] = _iso_ms(start)
    message["endedAt"] = _iso_ms(ended_at)
    message["timestamp"] = round(ended_at.timestamp() * 1000) + 800
    message["durationMs"] = round(duration * 1000)
    message["durationSeconds"] = duration
    message["durationMinutes"] = round(duration / 60, 4)
    message["analysis"] = {"successEvaluation": "true"}
    message.pop("summary", None)
    call = message["call"]
    call["id"] = conversation.id
    call["createdAt"] = _iso_ms(start - timedelta(seconds=2))
    call["updatedAt"] = _iso_ms(start)
    call["customer"] = {"number": phone}
    call["phoneCallProviderId"] = _call_sid(conversation.id)
    message["customer"] = {"number": phone}
    return document


def retell_body(conversation: Conversation, phone: str) -> dict[str, Any]:
    """A Retell ``call_analyzed`` of the conversation, from ``phone``."""
    document = _template("retell_call_analyzed")
    call = document["call"]
    timing = turn_timing(conversation.turns)
    start_ms = round(conversation.started_at.timestamp() * 1000)
    duration_ms = round(_duration_s(timing) * 1000)
    objects = []
    for turn, (began, ended) in zip(conversation.turns, timing, strict=True):
        words = turn.text.split()
        step = (ended - began) / max(1, len(words))
        objects.append(
            {
                "role": turn.role,
                "content": turn.text,
                "words": [
                    {
                        "word": word,
                        "start": round(began + i * step, 2),
                        "end": round(began + (i + 1) * step - 0.04, 2),
                    }
                    for i, word in enumerate(words)
                ],
            }
        )
    call.update(
        {
            "call_id": conversation.id,
            "from_number": phone,
            "to_number": AGENT_NUMBER,
            "direction": "inbound",
            "metadata": {},
            "retell_llm_dynamic_variables": {},
            "start_timestamp": start_ms,
            "end_timestamp": start_ms + duration_ms,
            "duration_ms": duration_ms,
            "transcript": "".join(
                f"{'Agent' if t.role == 'agent' else 'User'}: {t.text}\n"
                for t in conversation.turns
            ),
            "transcript_object": objects,
            "transcript_with_tool_calls": [
                {"role": t.role, "content": t.text, "words": []} for t in conversation.turns
            ],
            "recording_url": f"https://dxc03zgurdly9.cloudfront.net/{conversation.id}/recording.wav",
            "public_log_url": f"https://dxc03zgurdly9.cloudfront.net/{conversation.id}/public.log",
            "telephony_identifier": {"twilio_call_sid": _call_sid(conversation.id)},
            "call_analysis": {
                "in_voicemail": False,
                "user_sentiment": "Neutral",
                "call_successful": True,
                "custom_analysis_data": {},
            },
        }
    )
    call["call_cost"]["total_duration_seconds"] = math.ceil(duration_ms / 1000)
    return document


def ended_event(conversation: Conversation, dialogue: Dialogue) -> ConversationEnded:
    """A session of a long conversation as the ``conversation.ended`` a backend would post."""
    timing = turn_timing(conversation.turns)
    duration = _duration_s(timing)
    ended_at = conversation.started_at + timedelta(seconds=duration)
    return ConversationEnded.create(
        id=derived_event_id("api", "conversation.ended", conversation.id),
        tenant=TENANT,
        subject=f"{TENANT}/{dialogue.user}",
        source=Source(platform="api", event_id=conversation.id),
        occurred_at=ended_at,
        correlation_id=conversation.id,
        data={
            "conversation_id": conversation.id,
            "started_at": conversation.started_at,
            "ended_at": ended_at,
            "duration_secs": duration,
            "status": "done",
            "turns": [
                {"role": turn.role, "text": turn.text, "offset_ms": round(began * 1000)}
                for turn, (began, _) in zip(conversation.turns, timing, strict=True)
            ],
            "dynamic_variables": {"user_name": dialogue.name} if dialogue.name else {},
        },
    )


def signed_webhook(conversation: Conversation, phone: str) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of the conversation's webhook, signed as its platform signs."""
    builders = {"elevenlabs": elevenlabs_body, "vapi": vapi_body, "retell": retell_body}
    body = orjson.dumps(builders[conversation.platform](conversation, phone))
    secret = SECRETS[conversation.platform]
    now = int(time.time())
    headers = {"Content-Type": "application/json"}
    if conversation.platform == "elevenlabs":
        headers["ElevenLabs-Signature"] = sign_elevenlabs(secret, body, now)
    elif conversation.platform == "vapi":
        headers["X-Vapi-Secret"] = secret
    else:
        headers["x-retell-signature"] = sign_retell(secret, body, now * 1000)
    return f"/v1/webhooks/{TENANT}/{conversation.platform}", body, headers


# -- the run ----------------------------------------------------------------------------


@dataclass
class Asked:
    """A question and what each way of searching answered."""

    dialogue: Dialogue
    question: Question
    scores: dict[str, Score] = field(default_factory=dict)
    top: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def load_corpora(directory: Path) -> list[Corpus]:
    """The corpus files present in ``directory`` (at least one)."""
    corpora = []
    for name in CORPUS_FILES:
        path = directory / name
        if not path.exists():
            logger.warning("recall corpus: %s is missing", path)
            continue
        corpus = parse_corpus(orjson.loads(path.read_bytes()), name=name)
        expected = name.removesuffix(".json").split("_")
        if [corpus.name, corpus.half] != expected:
            raise ValueError(f"{name}: holds the {corpus.half!r} half of {corpus.name!r}")
        corpora.append(corpus)
    if not corpora:
        raise FileNotFoundError(f"no recall corpus file in {directory}")
    return corpora


async def run(ctx: BenchmarkContext) -> list[Figure]:
    settings = ctx.settings
    directory = Path(os.environ.get("MEMSTREAM_RECALL_CORPUS") or CORPUS_DIR)
    corpora = load_corpora(directory)
    dialogues = [d for c in corpora for d in take(c.dialogues, ctx.scale)]
    dialogues, stand_ins = assign_stand_ins(dialogues)
    if stand_ins:
        logger.warning(
            "%d callers have a number no phone plan assigns (memstream would file each call"
            " as an anonymous caller): posted with a valid stand-in",
            stand_ins,
        )
    conversations = [c for d in dialogues for c in d.conversations]
    logger.info(
        "recall corpus: %d dialogues, %d conversations, %d turns, %d questions",
        len(dialogues),
        len(conversations),
        sum(len(c.turns) for c in conversations),
        sum(len(d.questions) for d in dialogues),
    )

    token = await recall_tenant(settings, "bench_recall")
    with tempfile.TemporaryDirectory(prefix="bench-recall-") as scratch:
        async with _ingest_service(settings, Path(scratch), command=("run",)) as service:
            counts = await post_and_process(settings, service.port, token, dialogues)
            async with _query_service(settings) as base:
                asked, modes = await _ask_all(base, token, dialogues)

    for item in asked:
        baseline = bm25_results(item.dialogue, item.question.question)
        item.scores["bm25"] = score(item.question, baseline)
        item.top["bm25"] = [_brief(r) for r in baseline]
    _dump(asked, modes)
    params: dict[str, Any] = {
        "scale": ctx.scale,
        "corpus": ", ".join(f"{c.name}_{c.half}" for c in corpora),
        **counts,
        "stand_in_numbers": stand_ins,
        "limit": LIMIT,
        "extractor": f"llm:{settings.llm_model}" if settings.llm_model else "rules",
        "embedding_model": settings.embedding_model or "local",
        "sources": (
            "refused by the server: fused = memories only"
            if list(modes) == ["fused"]
            else "; ".join(f"{m}: {', '.join(s) if s else 'none given'}" for m, s in modes.items())
        ),
    }
    return _figures(ctx, asked, list(modes), params)


async def recall_tenant(settings: Settings, key_name: str) -> str:
    """The benchmark's topics, its tenant with a secret per platform, and an API key."""
    await ensure_topics(settings)
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as db:
        await tenants.create_tenant(db, TENANT, "Recall", default_region="US")
        for platform, secret in SECRETS.items():
            await tenants.add_webhook_secret(db, TENANT, platform, secret)
        return (await tenants.issue_api_key(db, TENANT, key_name)).token


async def post_and_process(
    settings: Settings, port: int, token: str, dialogues: Sequence[Dialogue]
) -> dict[str, int]:
    """Every conversation posted to the ingest service on ``port``; wait until projected,
    check the turns against the corpus; return the read models' counts."""
    conversations = sum(len(d.conversations) for d in dialogues)
    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as ingest:
        await _post_all(ingest, token, dialogues)
    posted = time.perf_counter()
    async with await AsyncConnection.connect(settings.require_database(), autocommit=True) as db:
        counts = await _until_processed(settings, db, conversations)
        processed = time.perf_counter()
        await _verify_turns(db, dialogues)
    logger.info(
        "posted %d conversations in %.1f s, processed in %.1f s more: %s",
        conversations, posted - began, processed - posted, counts,
    )  # fmt: skip
    return counts


async def _post_all(ingest: httpx.AsyncClient, token: str, dialogues: Sequence[Dialogue]) -> None:
    """Every call to its webhook route, every long session to /v1/events; in time order
    per subject (supersession follows the log's order)."""
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for dialogue in dialogues:
        for conversation in dialogue.conversations:
            if conversation.platform == "events":
                path = "/v1/events"
                body, headers = encode_event(ended_event(conversation, dialogue)), bearer
            else:
                path, body, headers = signed_webhook(conversation, dialogue.user)
            response = await ingest.post(path, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(
                    f"{conversation.platform} {conversation.id}: {path} answered "
                    f"{response.status_code}: {response.text}"
                )
            answer = response.json()
            if answer.get("status") != "accepted" or len(answer.get("events") or ()) != 1:
                raise RuntimeError(f"{conversation.id}: appended {answer}, expected one event")


async def _exists(db: AsyncConnection[Any], view: str) -> bool:
    row = await (await db.execute("SELECT to_regclass(%s) IS NOT NULL", [view])).fetchone()
    return bool(row and row[0])


async def _count(db: AsyncConnection[Any], view: str) -> int | None:
    if not await _exists(db, view):
        return None
    query = f"SELECT count(*) FROM {view} WHERE tenant = %s"
    row = await (await db.execute(query, [TENANT])).fetchone()
    return int(row[0]) if row else 0


async def _lags(settings: Settings, db: AsyncConnection[Any]) -> dict[str, int | None]:
    """Events each projection's live version has not projected yet (None: no live version)."""
    live = {i.projection: i.version for i in await versions.registry(db) if i.state == "live"}
    lags: dict[str, int | None] = {}
    for name, projection in PROJECTIONS.items():
        version = live.get(name)
        lags[name] = (
            None
            if version is None
            else sum(p.lag for p in await versions.positions(settings, db, projection, version))
        )
    return lags


async def _until_processed(
    settings: Settings, db: AsyncConnection[Any], conversations: int
) -> dict[str, int]:
    """Poll until every live projection has caught up and the read models' counts stand
    still; return the counts."""
    deadline = time.monotonic() + PROCESSING_TIMEOUT_S
    previous: tuple[int | None, ...] | None = None
    reported = time.monotonic()
    while True:
        counts = (
            await _count(db, "conversations.conversations"),
            await _count(db, "conversations.turns"),
            await _count(db, "memories.memories"),
            await _count(db, "embeddings.embeddings"),
        )
        lags = await _lags(settings, db)
        settled = all(lag == 0 for lag in lags.values()) and counts == previous
        if settled and None not in counts:
            if counts[0] != conversations:
                # Nothing is left to project: a conversation was lost (or merged) on the way.
                raise RuntimeError(
                    f"the read model holds {counts[0]} conversations of the {conversations} posted"
                )
            return {
                "conversations": conversations,
                "turns": counts[1] or 0,
                "memories": counts[2] or 0,
                "vectors": counts[3] or 0,
            }
        previous = counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"processing not done in {PROCESSING_TIMEOUT_S:.0f} s: {lags}")
        if time.monotonic() - reported > 15:
            logger.info("processing: counts %s, lag %s", counts, lags)
            reported = time.monotonic()
        await asyncio.sleep(POLL_S)


async def _verify_turns(db: AsyncConnection[Any], dialogues: Sequence[Dialogue]) -> None:
    """Every conversation's subject and turns in the read model are the corpus's, seq =
    corpus turn index; raise listing the differences otherwise."""
    cursor = await db.execute(
        "SELECT c.conversation_id, c.subject, t.seq, t.role, t.text"
        "  FROM conversations.conversations c"
        "  LEFT JOIN conversations.turns t"
        "    ON t.tenant = c.tenant AND t.conversation_id = c.conversation_id"
        " WHERE c.tenant = %s ORDER BY c.conversation_id, t.seq",
        [TENANT],
    )
    stored: dict[str, tuple[str, list[tuple[int, str, str]]]] = {}
    for conversation_id, subject, seq, role, text in await cursor.fetchall():
        entry = stored.setdefault(conversation_id, (subject, []))
        if seq is not None:
            entry[1].append((seq, role, text))
    problems: list[str] = []
    for dialogue in dialogues:
        for conversation in dialogue.conversations:
            where = f"{conversation.platform} {conversation.id}"
            found = stored.pop(conversation.id, None)
            if found is None:
                problems.append(f"{where}: not in the read model")
                continue
            subject, turns = found
            if subject != f"{TENANT}/{dialogue.user}":
                problems.append(f"{where}: subject {subject!r}, expected {dialogue.user!r}")
            expected = [(i, t.role, t.text) for i, t in enumerate(conversation.turns)]
            if turns != expected:
                first = next(
                    (i for i, (a, b) in enumerate(zip(turns, expected, strict=False)) if a != b),
                    min(len(turns), len(expected)),
                )
                problems.append(
                    f"{where}: {len(turns)} turns stored, {len(expected)} in the corpus; first"
                    f" difference at seq {first}: stored "
                    f"{turns[first] if first < len(turns) else None}, corpus "
                    f"{expected[first] if first < len(expected) else None}"
                )
    problems += [f"{c}: in the read model, not in the corpus" for c in stored]
    if problems:
        raise RuntimeError(
            f"{len(problems)} conversations differ from the corpus in the read model:\n"
            + "\n".join(problems[:20])
        )
    logger.info("read model: every turn's seq, role and text match the corpus")


async def _search(
    client: httpx.AsyncClient, user: str, question: str, sources: list[str] | None
) -> tuple[httpx.Response, float]:
    body: dict[str, Any] = {"user": user, "query": question, "limit": LIMIT}
    if sources is not None:
        body["sources"] = sources
    began = time.perf_counter()
    response = await client.post("/v1/memories/search", json=body)
    return response, (time.perf_counter() - began) * 1000


async def _supported_modes(client: httpx.AsyncClient, user: str) -> dict[str, list[str] | None]:
    """The ways of searching the server accepts: ``sources`` of each mode (None: omitted).
    A server refusing ``sources`` (422) is searched without them, as "fused"."""
    modes: dict[str, list[str] | None] = {}
    for mode in ("memories", "passages"):
        response, _ = await _search(client, user, "hello", [mode])
        if response.status_code == 200:
            modes[mode] = [mode]
        elif response.status_code == 422:
            logger.warning("search refuses sources [%r]: %s", mode, response.text)
        else:
            response.raise_for_status()
    modes["fused"] = None
    return modes


async def _ask_all(
    base: str, token: str, dialogues: Sequence[Dialogue]
) -> tuple[list[Asked], dict[str, list[str] | None]]:
    headers = {"Authorization": f"Bearer {token}"}
    asked = [Asked(d, q) for d in dialogues for q in d.questions]
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        modes = await _supported_modes(client, dialogues[0].user)
        for item in asked[:WARMUP_SEARCHES]:
            response, _ = await _search(client, item.dialogue.user, item.question.question, None)
            response.raise_for_status()
        for item in asked:
            for mode, sources in modes.items():
                response, ms = await _search(
                    client, item.dialogue.user, item.question.question, sources
                )
                if response.status_code != 200:
                    raise RuntimeError(f"search answered {response.status_code}: {response.text}")
                results: list[dict[str, Any]] = response.json()["results"]
                item.scores[mode] = score(item.question, results, ms)
                item.top[mode] = [_brief(r) for r in results]
    return asked, modes


def _brief(result: Result) -> dict[str, Any]:
    """What the dump keeps of a result."""
    return {
        "type": result.get("type", "memory"),
        "content": result.get("content"),
        "context": [t.get("text") for t in result.get("context") or () if isinstance(t, dict)]
        or None,
        "turns": sorted(result_turns(result)),
        "score": result.get("score"),
    }


def _dump(asked: Sequence[Asked], modes: Mapping[str, list[str] | None]) -> None:
    path = os.environ.get("MEMSTREAM_RECALL_DUMP")
    if not path:
        return
    document = {
        "modes": {m: s for m, s in modes.items()},
        "questions": [
            {
                "corpus": item.dialogue.corpus,
                "half": item.dialogue.half,
                "dialogue": item.dialogue.key,
                "user": item.dialogue.user,
                "question_id": item.question.id,
                "kind": item.question.kind,
                "question": item.question.question,
                "evidence": item.question.evidence,
                "answers": item.question.answers,
                "stale": item.question.stale,
                "scores": {m: dataclasses.asdict(s) for m, s in item.scores.items()},
                "top": item.top,
            }
            for item in asked
        ],
    }
    Path(path).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    logger.info("wrote every question's results to %s", path)


def _groups(asked: Sequence[Asked]) -> Iterator[tuple[str, str, list[Asked]]]:
    """(half, corpus, questions) of every half and corpus present."""
    for half in HALVES:
        for corpus in CORPORA:
            group = [a for a in asked if a.dialogue.half == half and a.dialogue.corpus == corpus]
            if group:
                yield half, corpus, group


def _figures(
    ctx: BenchmarkContext, asked: Sequence[Asked], modes: Sequence[str], params: dict[str, Any]
) -> list[Figure]:
    figures: list[Figure] = []

    def add(
        metric: str,
        value: float | None,
        unit: str,
        extra: dict[str, Any],
        target: Target | None = None,
    ) -> None:
        if value is not None:
            figures.append(ctx.figure(metric, value, unit, target, params=extra))

    for half, corpus, group in _groups(asked):
        where = f"{corpus} {half}"
        for mode in [*modes, "bm25"]:
            s = summarise([a.scores[mode] for a in group])
            extra = {**params, "questions": s.questions, "mode": mode}
            add(f"{mode} evidence recall@5, {where}", s.recall_5, "ratio", extra)
            add(f"{mode} evidence recall@10, {where}", s.recall_10, "ratio", extra)
            add(f"{mode} answer hit@5, {where}", s.hit_5, "ratio", extra)
            add(f"{mode} answer hit@5 in one result, {where}", s.hit_5_single, "ratio", extra)
            if mode == "bm25":
                continue
            add(
                f"{mode} stale rate, {where}",
                s.stale_rate,
                "ratio",
                {**extra, "changed_questions": s.stale_questions},
            )
            add(f"{mode} search p50, {where}", s.latency_p50, "ms", extra)
            add(f"{mode} search p95, {where}", s.latency_p95, "ms", extra)
            logger.info(
                "%-8s %-15s recall@5 %s recall@10 %s hit@5 %s stale %s p50 %s p95 %s",
                mode, where, _f(s.recall_5), _f(s.recall_10), _f(s.hit_5), _f(s.stale_rate),
                _f(s.latency_p50), _f(s.latency_p95),
            )  # fmt: skip
        if group:
            b = summarise([a.scores["bm25"] for a in group])
            logger.info(
                "%-8s %-15s recall@5 %s recall@10 %s hit@5 %s",
                "bm25", where, _f(b.recall_5), _f(b.recall_10), _f(b.hit_5),
            )  # fmt: skip
    for half in HALVES:
        group = [a for a in asked if a.dialogue.half == half]
        if not group:
            continue
        s = summarise([a.scores["fused"] for a in group])
        extra = {**params, "questions": s.questions, "mode": "fused", "pooled": "callers + long"}
        add(
            f"fused evidence recall@10, {half}",
            s.recall_10,
            "ratio",
            extra,
            target=at_least(RECALL_TARGET),
        )
        add(f"fused answer hit@5, {half}", s.hit_5, "ratio", extra, target=at_least(HIT_TARGET))
        by_kind: dict[str, list[Score]] = defaultdict(list)
        for a in group:
            by_kind[a.question.kind].append(a.scores["fused"])
        for kind, scores in sorted(by_kind.items()):
            k = summarise(scores)
            add(
                f"fused evidence recall@10 of {kind} questions, {half}",
                k.recall_10,
                "ratio",
                {**extra, "questions": k.questions, "kind": kind},
            )
            logger.info(
                "fused %-6s %-10s recall@10 %s hit@5 %s (%d questions)",
                half, kind, _f(k.recall_10), _f(k.hit_5), k.questions,
            )  # fmt: skip
    return figures


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
