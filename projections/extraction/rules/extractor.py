"""The rule-based extractor itself: :class:`RuleExtractor`.

It reads the caller's turns (role ``user``) clause by clause and matches them against
precompiled patterns (``domains._match``); the agent's turns are context (``agent``).
Anything the caller asks, greetings, thanks and bare yes/no give nothing; a request
asked as a question ("can you move me to the fifty dollar plan?") is read as the
request, and a first-person statement said with a rising tone ("I was charged twice
this month?") as a statement.

A memory said with stress ("really", "very important"...) gets +0.05, and one said
in more than one turn another +0.05, capped at 1.0.

Within one conversation candidates are deduplicated by :func:`normalise_content`
(their turns merged), a slot (``key``) keeps only its latest value (unless that is
only part of an earlier one, :func:`is_partial`: "Name: Maria" after "Name: Maria
Lopez" keeps the full name, with both turns), and a request
the agent fulfilled in the same call ("I need to move my cleaning") is folded into
the agent's confirmation rather than kept as an open plan.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from projections.extraction.candidates import Candidate, Extraction, is_partial, normalise_content
from projections.extraction.rules.agent import (
    _agent_event,
    _agent_notes,
    _answer,
    _asked_slot,
    _data_collected,
)
from projections.extraction.rules.domains import (
    _drugs,
    _match,
    _requested,
)
from projections.extraction.rules.normalise import (
    _CLAUSE_END,
    _PERSON,
    _clauses,
    _clean,
    _is_question,
    _phrase,
    _sentences,
    _strip_end,
    _words,
)
from projections.extraction.rules.people import (
    _mentions,
)
from projections.extraction.rules.rule import (
    _Context,
    _Found,
    _Spec,
)
from schemas.events import ConversationEndedData

# Intensifiers that mark a memory as stressed.
_STRESS = re.compile(
    r"\b(?:really|very|so|super|extremely|seriously|terribly|incredibly|absolutely|"
    r"severe|severely|serious|terrified)\b",
    re.IGNORECASE,
)
# Emphasis that covers the whole sentence ("it's really important that... I prefer...").
_EMPHASIS = re.compile(
    r"\b(?:important|make sure|please note|don't forget|keep in mind|for sure)\b", re.IGNORECASE
)

_STRESS_BONUS = 0.05
_REPEAT_BONUS = 0.05
_MIN_CONTENT, _MAX_CONTENT = 3, 200


@dataclass(slots=True)
class _Hit:
    """A memory found, before deduplication."""

    found: _Found
    origin: int
    """The turn it was said in; two origins make a repetition."""
    order: int
    turns: set[int] = field(default_factory=set)
    stressed: bool = False
    norm: str = ""


_SPEAKERS = frozenset({"user", "agent"})


class RuleExtractor:
    """Memories about the caller from regular expressions over the transcript.

    Pure and deterministic: the same conversation always gives the same candidates,
    in the same order (the order they were said in).
    """

    name = "rules"
    version = "2"
    deterministic = True

    def extract_many(self, conversations: Sequence[ConversationEndedData]) -> list[Extraction]:
        return [self.extract(c) for c in conversations]

    def extract(self, conversation: ConversationEndedData) -> Extraction:
        return Extraction(tuple(self._candidates(conversation)), self.name, self.version)

    def _candidates(self, conversation: ConversationEndedData) -> list[Candidate]:
        # Tool and system turns say nothing about the caller: they are left empty.
        turns = [
            _clean(turn.text, spoken=turn.role == "user") if turn.role in _SPEAKERS else ""
            for turn in conversation.turns
        ]
        roles = [turn.role for turn in conversation.turns]
        ctx = _Context(turns=turns, roles=roles)
        hits: list[_Hit] = []

        def add(found: _Found, origin: int, stressed: bool) -> None:
            hit = _Hit(found, origin, len(hits), {origin, *found.extra_turns}, stressed)
            hits.append(hit)

        first_user = next((i for i, role in enumerate(roles) if role == "user"), None)
        # The slot an agent question asked for, and its turn, until the caller answers.
        asked: tuple[str, int, str] | None = None
        for index, text in enumerate(turns):
            role = roles[index]
            if not text or role not in ("user", "agent"):
                continue
            ctx.turn = index
            sentences = list(_sentences(text))
            drugs = _drugs(text)
            if drugs:
                ctx.last_drug = drugs[-1].lower()
            if role == "agent":
                for sentence in sentences:
                    for found in _agent_notes(sentence, ctx):
                        add(found, index, False)
                    for clause in _clauses(sentence):
                        if _is_question(clause):
                            continue
                        event = _agent_event(_strip_end(_CLAUSE_END, clause), ctx)
                        if event is not None:
                            add(event, index, False)
                slot = _asked_slot(sentences)
                asked = (slot[0], index, slot[1]) if slot else None
                continue
            ctx.first_user_turn = index == first_user
            # The answer first: "Biscuit. He's a golden retriever." names whom "he" means.
            answer = _answer(asked[0], text, asked[2], ctx) if asked is not None else None
            # The template (and its spec) an elided next item continues: "... And latex."
            listing: tuple[str, _Spec] | None = None
            for sentence in sentences:
                for clause in _clauses(sentence):
                    if _is_question(clause):
                        # "Can you note that my crown is loose?" asks, but also tells.
                        note = _NOTE_THAT.match(clause)
                        if note is None:
                            listing = None
                            # "Can you switch me to the unlimited plan?" asks for something.
                            for found in _requested(clause, ctx):
                                add(found, index, False)
                            continue
                        clause = note["x"]
                    clause = _strip_end(_CLAUSE_END, clause)
                    found_here = _match(clause, ctx)
                    if not found_here and listing is not None:
                        item = _listed_item(*listing, clause)
                        found_here = [item] if item else []
                    listing = None
                    found_here += _mentions(clause, ctx, found_here)
                    if found_here:
                        stressed = bool(_STRESS.search(clause) or _EMPHASIS.search(sentence))
                        for found in found_here:
                            add(found, index, stressed)
                        last = found_here[-1]
                        listing = (last.continues, last.spec) if last.continues else None
            if asked is not None and answer is not None:
                add(replace(answer, extra_turns=(asked[1],)), index, False)
            asked = None

        hits = _fold_requests(hits)
        filled = {hit.found.key for hit in hits if hit.found.key}
        analysis = conversation.analysis
        if analysis is not None:
            # The platform's own extraction only fills slots the transcript left empty:
            # the caller's words win over a model's normalisation of them.
            last_user = max((i for i, role in enumerate(roles) if role == "user"), default=0)
            for found in _data_collected(analysis.data_collected):
                if found.key not in filled:
                    add(found, last_user, False)
        return _candidates(hits)


# A request to the agent that carries a statement about the caller.
_NOTE_THAT = re.compile(
    r"^(?:can|could|would|will) you (?:please )?(?:make a note|note(?: down)?|write down|"
    r"let [\w. ]+? know|tell [\w. ]+?|add(?: a note)?(?: to my (?:file|chart|notes))?)"
    r"(?: that)? (?P<x>(?:I|I'm|I've|my)\b.+?)\??$",
    re.IGNORECASE,
)
# An item said on its own after a list started: "... penicillin. And latex."
_ELLIPSIS = re.compile(r"^(?P<x>[a-z][\w'-]*(?: [\w'-]+){0,2})$", re.IGNORECASE)
_NOT_ITEMS = frozenset(_words("that this it yes no thanks please everything nothing all"))


def _listed_item(template: str, spec: _Spec, clause: str) -> _Found | None:
    match = _ELLIPSIS.match(clause)
    if match is None or match["x"].split()[0].lower() in _NOT_ITEMS:
        return None
    x = _phrase(match["x"])
    if x is None or x.split()[0].lower() in _PERSON.values():
        return None
    return _Found(template.format(x=x), spec, continues=template)


# Which confirmations fulfil which request.
_FULFILS = {
    "cancel": frozenset({"cancel"}),
    "book": frozenset({"book"}),
    "move": frozenset({"move", "book"}),
    "any": frozenset({"book", "move", "cancel"}),
    "plan": frozenset({"plan"}),
}


def _fold_requests(hits: list[_Hit]) -> list[_Hit]:
    """Drop requests the agent fulfilled later in the call, crediting their turns to it.

    "I need to move my cleaning" followed by the agent's "you're booked for Thursday"
    leaves one memory, the booking; the request is no longer an open plan.
    """
    kept: list[_Hit] = []
    for hit in hits:
        request = hit.found.request
        if request is not None:
            fulfilled = next(
                (
                    other
                    for other in hits
                    if other.found.confirms in _FULFILS[request] and other.origin > hit.origin
                ),
                None,
            )
            if fulfilled is not None:
                fulfilled.turns |= hit.turns
                continue
        kept.append(hit)
    return kept


def _candidates(hits: list[_Hit]) -> list[Candidate]:
    """Hits deduplicated, slots resolved, salience nudged, turned into candidates."""
    merged: dict[str, _Hit] = {}
    origins: dict[str, set[int]] = {}
    for hit in hits:
        content = hit.found.content
        if not _MIN_CONTENT <= len(content) <= _MAX_CONTENT:
            continue
        norm = normalise_content(content)
        hit.norm = norm
        known = merged.get(norm)
        if known is None:
            merged[norm] = hit
            origins[norm] = {hit.origin}
            continue
        known.turns |= hit.turns
        known.stressed = known.stressed or hit.stressed
        origins[norm].add(hit.origin)
        if hit.found.spec.salience > known.found.spec.salience:
            known.found = hit.found

    # A slot holds one value: when the caller corrects themselves, the last one said wins;
    # only part of a value said earlier ("Maria" after "Maria Lopez") is the same value.
    latest: dict[str, _Hit] = {}
    for hit in merged.values():
        key = hit.found.key
        if key is None:
            continue
        said = max(origins[hit.norm])
        held = latest.get(key)
        if held is None:
            latest[key] = hit
        elif is_partial(hit.found.content, held.found.content):
            held.turns |= hit.turns
            origins[held.norm] |= origins[hit.norm]
        elif said >= max(origins[held.norm]) or is_partial(held.found.content, hit.found.content):
            if is_partial(held.found.content, hit.found.content):
                hit.turns |= held.turns
                origins[hit.norm] |= origins[held.norm]
            latest[key] = hit
    kept = [h for h in merged.values() if h.found.key is None or latest[h.found.key] is h]

    out: list[Candidate] = []
    for hit in sorted(kept, key=lambda h: h.order):
        salience = hit.found.spec.salience
        if hit.stressed:
            salience += _STRESS_BONUS
        if len(origins[hit.norm]) > 1:
            salience += _REPEAT_BONUS
        out.append(
            Candidate(
                content=hit.found.content,
                sector=hit.found.spec.sector,
                salience=round(min(salience, 1.0), 2),
                kind=hit.found.spec.kind,
                key=hit.found.key,
                turns=tuple(sorted(hit.turns)),
            )
        )
    return out
