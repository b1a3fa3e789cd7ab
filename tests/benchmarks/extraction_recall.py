"""Fact recall of an extractor on the recall corpus, without the service around it.

``python -m tests.benchmarks.extraction_recall [FILE ...]``

For each question of the corpus (by default the *tune* half: ``recall_corpus/
callers_tune.json`` and ``long_tune.json``; the report half is held out and never read
here), the extractor runs on every call of that caller (each call one
``ConversationEndedData``, built as the unit tests build them), and the question counts
as recalled when some extracted memory's content contains all of its answer keywords
(case-insensitive; a list inside ``answers`` is alternatives, any one of which will do).

Also reported: memories extracted per turn and per caller turn, and the share of caller
turns that at least one memory cites. No broker, no database: this measures the
extractor alone (supersession, ranking and search are ``bench_recall``'s business).
Not collected by pytest, and not a ``bench_*`` module of the harness.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from projections.extraction.candidates import Extractor
from projections.extraction.rules import RuleExtractor
from schemas.events import ConversationEndedData, Turn

CORPUS = Path(__file__).parent / "recall_corpus"
TUNE_FILES = (CORPUS / "callers_tune.json", CORPUS / "long_tune.json")
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Question:
    owner: str
    """The caller (or long conversation) it is asked about."""
    id: str
    question: str
    answers: list[str | list[str]]
    kind: str


@dataclass
class Owner:
    """One caller, or one long conversation: its calls and the questions about it."""

    id: str
    calls: list[ConversationEndedData]
    questions: list[Question]


@dataclass
class Recall:
    questions: int = 0
    recalled: int = 0
    turns: int = 0
    caller_turns: int = 0
    caller_turns_cited: int = 0
    memories: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_kind_recalled: Counter[str] = field(default_factory=Counter)
    missed: list[tuple[Question, list[str]]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.recalled / self.questions if self.questions else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "recalled": self.recalled,
            "recall": round(self.rate, 3),
            "memories": self.memories,
            "memories_per_turn": round(self.memories / max(self.turns, 1), 3),
            "memories_per_caller_turn": round(self.memories / max(self.caller_turns, 1), 3),
            "caller_turns_cited": round(self.caller_turns_cited / max(self.caller_turns, 1), 3),
            "by_kind": {
                kind: f"{self.by_kind_recalled[kind]}/{count}"
                for kind, count in sorted(self.by_kind.items())
            },
        }


def _conversation(
    call_id: str, started: str | None, turns: Sequence[dict[str, Any]]
) -> ConversationEndedData:
    started_at = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else _EPOCH
    return ConversationEndedData(
        conversation_id=call_id,
        started_at=started_at,
        status="done",
        turns=tuple(
            Turn(role=turn["role"], text=turn["text"], offset_ms=index * 1000)
            for index, turn in enumerate(turns)
        ),
    )


def load(paths: Iterable[Path]) -> list[Owner]:
    """The callers and long conversations of the corpus files that exist."""
    owners: list[Owner] = []
    for path in paths:
        if "report" in path.name:
            raise ValueError(f"{path.name} is the held-out half: measure on the tune half")
        if not path.exists():
            continue
        document = json.loads(path.read_text())
        for caller in document.get("callers", []):
            calls = [
                _conversation(call["id"], call.get("started_at"), call["turns"])
                for call in caller["calls"]
            ]
            owners.append(Owner(caller["id"], calls, _questions(caller["id"], caller)))
        for talk in document.get("conversations", []):
            sessions = [
                _conversation(session["id"], session.get("date"), session["turns"])
                for session in talk["sessions"]
            ]
            owners.append(Owner(talk["id"], sessions, _questions(talk["id"], talk)))
    return owners


def _questions(owner: str, document: dict[str, Any]) -> list[Question]:
    return [
        Question(owner, q["id"], q["question"], q["answers"], q.get("kind", "fact"))
        for q in document.get("questions", [])
    ]


def answered(answers: Sequence[str | list[str]], content: str) -> bool:
    """Whether ``content`` holds every answer keyword (a list: any one of them)."""
    text = content.lower()
    return all(
        any(option.lower() in text for option in ([want] if isinstance(want, str) else want))
        for want in answers
    )


def measure(owners: Sequence[Owner], extractor: Extractor | None = None) -> Recall:
    """Recall of ``extractor`` (the rules by default) over ``owners``' questions."""
    extractor = extractor or RuleExtractor()
    result = Recall()
    for owner in owners:
        contents: list[str] = []
        for data in owner.calls:
            candidates = extractor.extract(data).candidates
            contents += [c.content for c in candidates]
            result.memories += len(candidates)
            result.turns += len(data.turns)
            users = {i for i, turn in enumerate(data.turns) if turn.role == "user"}
            result.caller_turns += len(users)
            result.caller_turns_cited += len(users & {t for c in candidates for t in c.turns})
        for question in owner.questions:
            result.questions += 1
            result.by_kind[question.kind] += 1
            if any(answered(question.answers, content) for content in contents):
                result.recalled += 1
                result.by_kind_recalled[question.kind] += 1
            else:
                result.missed.append((question, contents))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args
    paths = [Path(a) for a in args if a != "-v"] or list(TUNE_FILES)
    owners = load(paths)
    if not owners:
        print(f"no corpus found in {', '.join(str(p) for p in paths)}", file=sys.stderr)
        return 1
    result = measure(owners)
    if verbose:
        for question, _ in result.missed:
            print(f"missed {question.owner}/{question.id} [{question.kind}] "
                  f"{question.question!r} -> {question.answers}")  # fmt: skip
    print(json.dumps({"extractor": "rules", **result.summary()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
