"""What kind of answer a question asks for, and whether a text holds one.

"When is the cleaning?" wants a moment, "How old is Mango?" a number, "Who drives her?"
a name, "Where should it go?" a place. A passage that holds that kind of thing (a day
or a date, a number said in digits or words, a name) is likelier to answer than one
that only shares the question's words: search raises its relevance by
``SearchWeights.answer_type`` (services/query/search.py). Plain English patterns, no
model: questions and transcripts are spoken English.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["AnswerType", "answer_type", "asks_current", "holds_answer"]

AnswerType = Literal["moment", "number", "person", "place"]

_NUMBER = (
    r"\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen"
    r"|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy"
    r"|eighty|ninety|hundred|thousand|million|dozen|half|once|twice"
)
_MOMENT = (
    r"january|february|march|april|may|june|july|august|september|october|november|december"
    r"|monday|tuesday|wednesday|thursday|friday|saturday|sunday|mondays|tuesdays|wednesdays"
    r"|thursdays|fridays|saturdays|sundays|today|tomorrow|yesterday|tonight|weekend"
    r"|morning|afternoon|evening|noon|midnight|o'clock|a\.m\.|p\.m\.|am|pm"
    r"|\d{1,2}(?:st|nd|rd|th)|\d{1,2}:\d{2}|\d{4}"
    r"|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth"
    r"|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth"
    r"|twentieth|thirtieth|(?:last|next|this|every|each)\s+(?:week|month|year|time|summer"
    r"|winter|spring|fall|autumn)|ago"
)
_PLACE = (
    r"street|st\.|avenue|ave|road|rd\.|lane|drive|court|boulevard|blvd|place|way|apartment"
    r"|unit|suite|city|town|county|state|country|island|airport|hotel|downtown|uptown"
)

_PATTERNS: dict[AnswerType, re.Pattern[str]] = {
    "number": re.compile(rf"\b(?:{_NUMBER})\b", re.IGNORECASE),
    "moment": re.compile(rf"\b(?:{_MOMENT})\b", re.IGNORECASE),
    "place": re.compile(rf"\b(?:{_PLACE})\b", re.IGNORECASE),
}
# A capitalised word that does not start a sentence: a name (transcripts are cased).
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]{1,})\b")
_NOT_NAMES = frozenset(
    [
        "I",
        "Im",
        "Ive",
        "Id",
        "Ill",
        "OK",
        "Okay",
        "Oh",
        "Yes",
        "Yeah",
        "No",
        "Hi",
        "Hello",
        "Hey",
        "Thanks",
        "Thank",
        "Sure",
        "Um",
        "Uh",
        "Mr",
        "Mrs",
        "Ms",
        "Dr",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ]
)

_QUESTIONS: list[tuple[re.Pattern[str], AnswerType]] = [
    (re.compile(r"^\s*(?:when|what\s+(?:time|day|date|month|year))\b|\bhow\s+long\s+ago\b",
                re.IGNORECASE), "moment"),
    (re.compile(r"\bhow\s+(?:many|much|old|often|far|long)\b|\bwhat\s+(?:number|amount|dose"
                r"|price|cost|budget|percentage|temperature|size)\b", re.IGNORECASE), "number"),
    (re.compile(r"^\s*(?:who|whom|whose)\b|\bwhat(?:'s|\s+is)\s+(?:his|her|their|the)\s+\w*\s*"
                r"name\b|\bwho(?:'s|\s+is)\b", re.IGNORECASE), "person"),
    (re.compile(r"^\s*where\b|\bwhat\s+(?:address|city|town|country)\b", re.IGNORECASE),
     "place"),
]  # fmt: skip


# A question about the present state of something that may have changed ("Which plan is
# she on now?", "What's his current dose?"): of two answers, the later one is meant.
_CURRENT = re.compile(
    r"\b(?:now|nowadays|currently|current|these\s+days|at\s+the\s+moment|any\s*more|latest"
    r"|most\s+recent(?:ly)?|still)\b",
    re.IGNORECASE,
)


def asks_current(question: str) -> bool:
    """Whether ``question`` asks what holds now (a value that may have changed)."""
    return _CURRENT.search(question) is not None


def answer_type(question: str) -> AnswerType | None:
    """The kind of answer ``question`` asks for, or None (a what/why/how question)."""
    for pattern, kind in _QUESTIONS:
        if pattern.search(question):
            return kind
    return None


def holds_answer(kind: AnswerType, text: str, question: str) -> bool:
    """Whether ``text`` holds something of ``kind`` that the question does not already say."""
    asked = {w.casefold() for w in re.findall(r"\w+", question)}
    if kind == "person" or kind == "place":
        names = [n for n in _NAME.findall(text) if n not in _NOT_NAMES]
        if any(n.casefold() not in asked for n in names):
            return True
        if kind == "person":
            return False
    return any(m.group(0).casefold() not in asked for m in _PATTERNS[kind].finditer(text))
