"""The rule-based extractor: English patterns over a transcript, no model, no network.

:class:`RuleExtractor` is the default extractor when no LLM is configured. It reads
the caller's turns (role ``user``) clause by clause and matches them against
precompiled patterns; the agent's turns are context: booking, rescheduling and
cancellation confirmations (also a slot read back: "Okay, Friday the thirtieth at
eight thirty"), plan switches ("I've upgraded you to Skyline Gig"), changed values
("I've updated the automatic transfer to seven fifty a month") and reference numbers
("Your claim number is...") become memories of the caller, what the agent says it
noted ("I've noted that you prefer mornings") is read as the caller saying it, and an
agent question for a common slot (name, date of birth, email, address, city, phone,
insurance, member id) turns the caller's next answer into an identity fact; questions
about someone else's name ("What's his name?"), allergies, an amount ("How much are
you aiming for?") or a party's size read the answer the same way. Simple string values
of the platform's ``analysis.data_collected`` fill the same slots when the transcript
left them empty.

Besides health, identity, family, work, home, feelings, problems, habits, plans and
preferences, the rules know what callers of service lines say: plan and subscription
changes ("switch me to the unlimited plan"), how to be contacted ("text me, don't
call"), people and pets by name ("my wife Linda", "her caregiver, Rosa, picks up"; a
later "she", "his name" or "Max" means them), medication and doses, a slot per drug
("they upped my metformin to a thousand milligrams"), delivery and street addresses,
savings goals and amounts, trips with dates and budgets, seats and diet, fraud and
disputed charges, codes, and dates of events ("the conference is May fourth").

Content is rewritten in the third person about the caller, without a subject
("I'm allergic to penicillin" -> "Allergic to penicillin", "my" -> "their").
Anything the caller asks, greetings, thanks and bare yes/no give nothing; a request
asked as a question ("can you move me to the fifty dollar plan?") is read as the
request, and a first-person statement said with a rising tone ("I was charged twice
this month?") as a statement. What the agent offers is no fact of the caller's.

Spoken English: fillers ("um", "uh", ", like,", "you know") and stutters go, "like"
before an amount means "about" ("save like twenty grand" -> "save about twenty
grand"), a self-correction keeps the corrected value only ("the 14th, no wait, the
15th" -> "the 15th"), and numbers said in words stay as said ("twenty five hundred
dollars"; "five five five" is no stutter).

Sectors: semantic for facts, preferences and identity; episodic for events,
appointments, plans and problems; procedural for habits and how the caller likes
things done; emotional for feelings; reflective for the caller's own decisions,
goals and realisations.

Salience, before nudges:

==============================================  ========
what                                            salience
==============================================  ========
health: allergies, conditions, medication       0.9
identity: name, date of birth, contact details  0.8
appointments and other events                   0.7
life facts: home, work, family                  0.7
preferences                                     0.6
plans                                           0.6
problems                                        0.6
fraud and disputed charges (problems)           0.7
goals, decisions, realisations (reflective)     0.6
feelings                                        0.5
habits                                          0.5
==============================================  ========

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from projections.extraction.candidates import Candidate, Extraction, is_partial, normalise_content
from schemas.events import ConversationEndedData, Sector

__all__ = ["RuleExtractor"]

# ----------------------------------------------------------------- what a rule yields


@dataclass(frozen=True, slots=True)
class _Spec:
    """The sector, kind and base salience of one family of memories."""

    sector: Sector
    kind: str
    salience: float


HEALTH = _Spec("semantic", "fact", 0.9)
IDENTITY = _Spec("semantic", "identity", 0.8)
EVENT = _Spec("episodic", "event", 0.7)
LIFE = _Spec("semantic", "fact", 0.7)
PREFERENCE = _Spec("semantic", "preference", 0.6)
MANNER = _Spec("procedural", "preference", 0.6)
PLAN = _Spec("episodic", "plan", 0.6)
PROBLEM = _Spec("episodic", "problem", 0.6)
GOAL = _Spec("reflective", "plan", 0.6)
INSIGHT = _Spec("reflective", "fact", 0.6)
FEELING = _Spec("emotional", "feeling", 0.5)
HABIT = _Spec("procedural", "habit", 0.5)

_STRESS_BONUS = 0.05
_REPEAT_BONUS = 0.05
_MIN_CONTENT, _MAX_CONTENT = 3, 200


@dataclass(frozen=True, slots=True)
class _Found:
    """What one rule made of one clause."""

    content: str
    spec: _Spec
    key: str | None = None
    request: str | None = None
    """For an appointment request the agent may fulfil in the same call: which
    confirmations fulfil it (``book``, ``move``, ``cancel`` or ``any``)."""
    continues: str | None = None
    """A template for a next clause that only names another item ("... penicillin. And
    latex"): ``{x}`` is that item."""
    confirms: str | None = None
    """For an agent's confirmation: what it did (``book``, ``move`` or ``cancel``)."""
    extra_turns: tuple[int, ...] = ()
    """Turns besides the one matched that the memory also comes from (context)."""


@dataclass(slots=True)
class _Context:
    """Per-conversation state the rules read and write while walking the turns."""

    turns: Sequence[str]
    roles: Sequence[str]
    turn: int = 0
    first_user_turn: bool = False
    problem_subject: str | None = None
    """The last thing the caller said was wrong ("Back tooth"), for a later "it hurts"."""
    people: dict[str, str] = field(default_factory=dict)
    """Names the caller gave to people and pets ("Max" -> "Dog Max"), for "Max has..."."""
    last_person: tuple[str, str, int, str] | None = None
    """Who the caller last spoke of, for a later "she" or "his": the label ("Mom", "Dog
    Max"), "she", "he" or "any", the turn, and the relation when they were not named."""
    behalf: tuple[str, str, int, str] | None = None
    """Whom the caller is calling for ("I'm calling for my dad"): "he" all call long."""
    last_drug: str | None = None
    """The medication last named in the call, for "she dropped it to eighteen units"."""


_Build = Callable[[re.Match[str], _Context], "_Found | list[_Found] | None"]
_BuildOne = Callable[[re.Match[str], _Context], "_Found | None"]


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    build: _Build
    lead: str | None
    """The clause's first word when the pattern fixes it ("i", "my"): other clauses skip
    the rule without running the regex, which keeps a long call in a few milliseconds."""
    needs: re.Pattern[str] | None = None
    """Words one of which a clause must contain (lowercase) for the regex to be worth
    running, for a rule whose first word is not fixed."""


_FIXED_LEAD = re.compile(r"(?:(I)(?=[ ('])|(my|it|this) )")
_GROUP_START = re.compile(r"\((?:\?:|\?P<\w+>)")


def _lead(pattern: str) -> str | None:
    """The first word every match of an anchored ``pattern`` starts with, if fixed."""
    if not pattern.startswith("^"):
        return None
    body = pattern[1:]
    group = _GROUP_START.match(body)
    if group is None:
        fixed = _FIXED_LEAD.match(body)
        return (fixed[1] or fixed[2]).lower() if fixed else None
    # A leading group counts when it is not optional and all its alternatives agree.
    depth, start, alternatives = 0, group.end(), []
    for index in range(group.end(), len(body)):
        char = body[index]
        if char == "\\":
            continue
        if char == "(" and body[index - 1] != "\\":
            depth += 1
        elif char == ")" and body[index - 1] != "\\":
            if depth == 0:
                alternatives.append(body[start:index])
                if body[index + 1 : index + 2] in ("?", "*"):
                    return None
                break
            depth -= 1
        elif char == "|" and depth == 0:
            alternatives.append(body[start:index])
            start = index + 1
    leads = {_lead("^" + alternative) for alternative in alternatives}
    return leads.pop() if len(leads) == 1 else None


def _rule(pattern: str, build: _Build, needs: str = "") -> _Rule:
    # Patterns are case-insensitive; (?-i:...) marks the parts that rely on case
    # (a capitalised name). ``needs``: "|"-separated words, see _Rule.needs.
    words = re.compile("|".join(re.escape(w) for w in needs.split("|"))) if needs else None
    return _Rule(re.compile(pattern, re.IGNORECASE), build, _lead(pattern), words)


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


# ------------------------------------------------------------------ text utilities

_APOSTROPHES = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": " - ", "\u2013": " - "}
)
_SPACES = re.compile(r"\s+")
# Hesitations ASR writes out; "you know"/"I mean"/"like" only in their filler position.
_FILLERS = re.compile(
    r",\s*(?:u+[hm]+|(?-i:[eE]+r+m*)|h+m+|a+h+)\s*,\s*(?=[a-z0-9])(?!(?:could|can|would|will|"
    r"should|do|does|did|is|are|was|i|i'm|we|my|you|so|and|but|because|then|it|it's|that|"
    r"he|she|they)\b)"
    r"|(?<![\w'])(?:u+[hm]+|(?-i:[eE]+r+m*)|h+m+|m{2,}|a+h+)(?![\w'])[,.]?\s*"
    r"|,\s*(?:you know|I mean|like)\s*,|^\s*(?:you know|I mean),\s*",
    re.IGNORECASE,
)
# Numbers said in words ("twenty five hundred", "a thousand", "forty-two").
_NUM_WORD = (
    r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|"
    r"seventy|eighty|ninety|hundred|thousand|million|billion|grand|dozen)"
)
# A number, in digits or words: "$1,200", "20k", "a thousand", "twenty five hundred".
_NUMBER = (
    rf"(?:\$ ?\d[\d,.]*(?: ?[km]\b)?|\d[\d,.]*(?: ?[km]\b)?|(?:(?:a|one) (?:couple|few) |"
    rf"(?:a|one|half a) )?{_NUM_WORD}(?:(?:[ -]| and | a ){_NUM_WORD})*\b)"
)
_HAS_NUMBER = re.compile(rf"\d|\b{_NUM_WORD}\b", re.IGNORECASE)
# "I- I'm", "my my tooth": a word stuttered before the real start. Numbers are never
# stutters: "five five five", "twenty twenty".
_STUTTER = re.compile(
    rf"\b(?!\d|{_NUM_WORD}\b)(\w+)(?:-|,)?\s+(?=\1\b)|\bI-?\s+(?=I')", re.IGNORECASE
)
# A self-correction: "the 14th, no wait, the 15th". Weak markers need commas around them.
_CORRECTION = re.compile(
    r"(?:,\s*|\s+-+\s*|\s+)(?:no,? wait|wait,? no|no,? sorry|sorry,? no|no,? I mean|"
    r"sorry,? I mean|or rather|make that|scratch that|I mean)[,.]?\s+"
    r"|,\s*(?:sorry|no|correction|oops)\s*,\s*",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_CORRECTED_WORD = re.compile(r"[\w'$]+")
_NUMBERISH = re.compile(rf"^(?:\$?\d[\d,.]*\w*|{_NUM_WORD}|and|a)$", re.IGNORECASE)
# "like" before an amount means "about" ("save like twenty grand"), unless it is the verb.
_LIKE_AMOUNT = re.compile(rf"(?<![\w'])(\S+ )like (?=\$?\d|(?:a |an )?{_NUM_WORD}\b)", re.I)
_LIKE_VERB_BEFORE = frozenset(
    _w.lower()
    for _w in [
        "i",
        "we",
        "you",
        "they",
        "he",
        "she",
        "i'd",
        "we'd",
        "you'd",
        "they'd",
        "would",
        "'d",
        "do",
        "does",
        "did",
        "don't",
        "doesn't",
        "didn't",
        "also",
        "really",
        "just",
        "still",
        "might",
        "may",
        "will",
        "i'll",
        "we'll",
        "to",
        "wouldn't",
        "not",
        "kinda",
        "sorta",
        "definitely",
        "probably",
    ]
)
# "9 a.m." -> "9 am", keeping the full stop when a new sentence follows.
_AM_PM_END = re.compile(r"\b([ap])\.\s?m\.(?=\s+[A-Z])", re.IGNORECASE)
_AM_PM = re.compile(r"\b([ap])\.\s?m\.?(?!\w)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]+[\"')]*\s+|:\s+")
# Never the end of a sentence: titles and the like before a name or a number.
_ABBREVIATION = re.compile(r"\b(?:dr|mr|mrs|ms|st|mt|jr|sr|prof|ave|rd|vs|approx|apt)\.$", re.I)
_CLAUSE_BREAK = re.compile(
    r"\s*;\s*"
    r"|,?\s+(?:but|because(?! of)|'?cause|although|whereas|and that)\s+"
    r"|,\s*(?:so|since|though|plus|and then|and also|then)\s+"
    r"|,?\s+and\s+(?=(?:I|I'm|I've|I'd|I'll|my|it|it's)\b)"
    r"|,\s*(?=(?:I|I'm|I've|I'd|I'll|my|it|it's|they|they're|she|she's|he|he's|we|we're|that's"
    r"|is|are|do|does|did|can|could|would|will|should|what|when|where|how|why|who|right"
    r"|mornings?|afternoons?|evenings?|weekends?|weekdays?|(?:mon|tues|wednes|thurs|fri|satur"
    r"|sun)days)\b)"
    r"|\s+-+\s+"
    r"|,\s*(?=go ahead and\b)",
    re.IGNORECASE,
)
# Words that open a clause without carrying anything: discourse markers, hedges.
_LEADING = re.compile(
    r"^(?:(?:and|but|so|oh|well|also|actually|honestly|basically|anyway|anyways|okay|ok|"
    r"yeah|yes|yep|no(?! (?:dairy|gluten|nuts|peanuts|shellfish|seafood|fish|pork|meat|"
    r"red meat|beef|eggs|soy|sesame|alcohol|sugar|mushrooms|onions|garlic|spicy|middle seat|"
    r"calls|phone calls)\b)|nope|right|alright|all right|sure|great|good|perfect|cool|hi|"
    r"hello|hey|"
    r"thanks|thank you|by the way|just so you know|i mean|in fact|plus|then|now|though|"
    r"i think(?: that)?|i guess|i believe|i feel like|i'm pretty sure(?: that)?|"
    r"to be honest|of course|you see|listen|look)\b[,.!]?\s*)+",
    re.IGNORECASE,
)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening))\b(?: there)?"
    r"(?:\s+(?-i:[A-Z][a-z]+))?\s*[,.!]*\s*",
    re.IGNORECASE,
)
# Said at the end of a clause without adding anything.
_TRAILING = re.compile(
    r"(?:,?\s+(?:please|though|too|as well|anyway|actually|by the way|i think|i guess|"
    r"i believe|you know|or so|or something|and stuff|and everything|right|okay|ok|"
    r"thanks|thank you|for you|if possible|if that's okay|if that makes sense))+$",
    re.IGNORECASE,
)
# Markers left dangling at a clause's end once the next clause is cut off.
_CLAUSE_TAIL = re.compile(
    r"(?:,\s*(?:honestly|actually|basically|like|you know|i mean)|[,\s]+(?:and|but|so|or))+"
    r"[\s,.;:!?]*$",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[\s,.;:!\"')-]+$")
_EDGE_CHARS = " \t\n,.;:!?\"'-"
# A phrase ending in one of these was cut off ("I need to, um").
_DANGLING = re.compile(
    r"\b(?:to|the|a|an|and|or|of|with|for|my|your|their|about|in|on|at|that)$",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^(?:do|does|did|can|could|would|will|is|are|was|were|should|shall|may|might|"
    r"have you|has|what|when|where|which|who|whom|whose|why|how|isn't|aren't|"
    r"don't|doesn't|won't|wouldn't|couldn't)\b",
    re.IGNORECASE,
)

# First person to third; "we" counts as the caller's household. Longest forms first.
_PERSON = {
    "i'm": "they're",
    "i am": "they are",
    "i was": "they were",
    "i wasn't": "they weren't",
    "i've": "they've",
    "i'd": "they'd",
    "i'll": "they'll",
    "i": "they",
    "me": "them",
    "my": "their",
    "mine": "theirs",
    "myself": "themselves",
    "we're": "they're",
    "we've": "they've",
    "we'd": "they'd",
    "we'll": "they'll",
    "we": "they",
    "our": "their",
    "ours": "theirs",
    "ourselves": "themselves",
    "us": "them",
}
_PERSON_WORD = re.compile(
    r"(?<![\w'])(?:"
    + "|".join(sorted((re.escape(k) for k in _PERSON), key=len, reverse=True))
    + r")(?![\w'])",
    re.IGNORECASE,
)
# The agent speaks to the caller: "your cleaning" is theirs.
_SECOND_PERSON = {
    "you're": "they're",
    "you've": "they've",
    "you'll": "they'll",
    "your": "their",
    "yours": "theirs",
    "yourself": "themselves",
    "you": "them",
}
_SECOND_PERSON_WORD = re.compile(
    r"(?<![\w'])(?:you're|you've|you'll|yourself|yours|your|you)(?![\w'])", re.IGNORECASE
)


def _clean(text: str, *, spoken: bool = True) -> str:
    """One turn's text with odd spacing removed, and for ``spoken`` text (the caller's,
    as transcribed) fillers and stutters too; the agent's text is written by a model."""
    text = text.translate(_APOSTROPHES)
    if ".m" in text or ".M" in text or ". m" in text:
        text = _AM_PM_END.sub(lambda m: m[1].lower() + "m.", text)
        text = _AM_PM.sub(lambda m: m[1].lower() + "m", text)
    if spoken:
        if _CORRECTION.search(text):
            text = " ".join(_corrected(s) for s in _SENTENCE_SPLIT.split(text))
        text = _FILLERS.sub(" ", text)
        text = _STUTTER.sub("", text)
        if "like" in text.lower():
            text = _LIKE_AMOUNT.sub(_like_amount, text)
    return _SPACES.sub(" ", text).strip()


def _like_amount(match: re.Match[str]) -> str:
    before = match[1]
    if before.strip(" ,").lower() in _LIKE_VERB_BEFORE:
        return match[0]
    return before + "about "


def _corrected(sentence: str) -> str:
    """``sentence`` with its self-corrections applied: "on the 14th, no wait, the 15th" ->
    "on the 15th", "Jon, sorry, John" -> "John". A correction that cannot be lined up with
    what it corrects is left as said."""
    start = 0
    while True:
        marker = next(
            (m for m in _CORRECTION.finditer(sentence, start)
             if _CORRECTED_WORD.match(sentence, m.end())),
            None,
        )  # fmt: skip
        if marker is None:
            return sentence
        before, after = sentence[: marker.start()], sentence[marker.end() :]
        word = _CORRECTED_WORD.match(after)[0]  # type: ignore[index]
        tokens = list(_CORRECTED_WORD.finditer(before))[-8:]
        cut = _correction_start(tokens, word)
        if cut is None:
            start = marker.end()
            continue
        sentence = before[:cut] + after
        start = cut


def _is_numberish(word: str) -> bool:
    return bool(_NUMBERISH.match(word))


def _is_name_word(word: str) -> bool:
    return word[:1].isupper() and word != "I"


def _correction_start(tokens: list[re.Match[str]], word: str) -> int | None:
    """Where the words a correction starting with ``word`` replaces begin, if known."""
    # The same first word said again: "the 14th, no wait, the 15th".
    same = next((t for t in reversed(tokens) if t[0].lower() == word.lower()), None)
    if same is not None:
        return same.start()
    if not tokens:
        return None
    last = tokens[-1][0]
    kind = next((k for k in (_is_numberish, _is_name_word) if k(word) and k(last)), None)
    if kind is None:
        return None
    # A number for a number ("fifteen, no, sixteen hundred"), a name for a name
    # ("Lisbon, no wait, Porto"): the whole run before the marker goes.
    cut = tokens[-1].start()
    for token in reversed(tokens[:-1]):
        if not kind(token[0]):
            break
        cut = token.start()
    return cut


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.end()].strip()
        if _ABBREVIATION.search(piece, max(0, len(piece) - 8)):
            continue
        if piece:
            yield piece
        start = match.end()
    rest = text[start:].strip()
    if rest:
        yield rest


def _strip_start(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.match(text)
    return text[match.end() :] if match else text


# End-anchored patterns only look at the end: re.sub would try every position.
_END_WINDOW = 60


def _strip_end(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.search(text, max(0, len(text) - _END_WINDOW))
    return text[: match.start()] if match else text


def _clauses(sentence: str) -> Iterator[str]:
    """The clauses of one sentence, each with its leading markers removed."""
    sentence = _strip_start(_GREETING, sentence)
    for raw in _CLAUSE_BREAK.split(sentence):
        clause = _strip_end(_CLAUSE_TAIL, _strip_start(_LEADING, raw.strip()))
        if clause:
            yield clause


# "I was charged twice this month?": said with a rising tone, but a statement.
_UPTALK = re.compile(
    r"^(?:I|I'm|I've|I was|my|we|we're|we've|our)\b(?!.*\b(?:wonder|wondering|"
    r"know if|know whether|sure if|if you|whether you)\b)",
    re.IGNORECASE,
)


def _is_question(clause: str) -> bool:
    if _QUESTION_START.match(clause):
        return True
    return clause.rstrip().endswith("?") and not _UPTALK.match(clause)


def _third_person(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match[0]
        return _PERSON.get(word.lower(), word)

    return _PERSON_WORD.sub(swap, text)


def _about_caller(text: str) -> str:
    """An agent's words about the caller: "your" -> "their"."""
    return _SECOND_PERSON_WORD.sub(lambda m: _SECOND_PERSON[m[0].lower()], text)


def _trim(text: str) -> str:
    """A captured phrase without edge punctuation and empty trailing words."""
    previous = None
    while previous != text:
        previous = text
        text = _strip_end(_TRAILING, text.strip(_EDGE_CHARS))
    return text


def _phrase(text: str | None) -> str | None:
    """A captured phrase ready to go into content, or None when it is unusable."""
    if text is None:
        return None
    text = _trim(text)
    if len(text) < 2 or _DANGLING.search(text, max(0, len(text) - 8)):
        return None
    return _third_person(text)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(text: str) -> str:
    """Lowercase a phrase's first letter unless it starts a name ("Mornings" but "Monday")."""
    first = text.split(" ", 1)[0]
    if first in _PROPER_WORDS or (len(first) > 1 and first.isupper()):
        return text
    return text[:1].lower() + text[1:]


def _words(text: str) -> tuple[str, ...]:
    """A word list written as one string."""
    return tuple(text.split())


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = _words(
    """
    january february march april may june july august september october november
    december
    """
)
_PROPER_WORDS = frozenset(
    w.capitalize() + s for w in (*_WEEKDAYS, *_MONTHS) for s in ("", "s")
) | frozenset({"I", "Dr", "Dr."})


# ------------------------------------------------------------------------ builders


def _fmt(template: str, spec: _Spec, key: str | None = None, **kwargs: Any) -> _BuildOne:
    """A builder filling ``template``'s ``{x}`` with the third-person capture ``x``."""

    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        x = _phrase(match["x"])
        if x is None:
            return None
        return _Found(_capitalise(template.format(x=x)), spec, key, **kwargs)

    return build


# Words that end a name ("my name is Maria and I...") or show it was no name at all.
_NAME_STOP = frozenset(
    _words(
        """
    and but so or i i'm im calling from here speaking with the a an um uh just my is
    it please back later tomorrow today when if at on in to for about sorry not good
    fine okay ok well new looking trying hoping wondering also still really very
    glad happy
    """
    )
)
_NAME_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_TITLES = frozenset({"Dr", "Mr", "Mrs", "Ms"})


def _name(text: str | None, *, strict: bool) -> str | None:
    """A person's name from the start of ``text``; ``strict`` wants it capitalised."""
    if text is None:
        return None
    words: list[str] = []
    for raw in _trim(text).split():
        word = raw.strip(",.")
        if word in _TITLES and raw.endswith(".") and not words:
            words.append(word + ".")  # "Mr. Hadley": the title's full stop ends nothing
            continue
        possessive = word.endswith("'s") and len(words) > 0
        word = word.removesuffix("'s") if possessive else word
        if word.lower() in _NAME_STOP or not _NAME_WORD.fullmatch(word):
            break
        if strict and not word[0].isupper():
            break
        words.append(word)
        if raw.endswith((",", ".")) or possessive:
            break
    if not words or len(words) > 4:
        return None
    name = " ".join(words)
    return name.title() if name.islower() else name


_NUMBER_WORDS = _words(
    """
    first second third fourth fifth sixth seventh eighth ninth tenth eleventh
    twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth
    nineteenth twentieth thirtieth twenty thirty nineteen
    """
)
_DATE_LIKE = re.compile(r"\d|\b(?:" + "|".join((*_MONTHS, *_NUMBER_WORDS)) + r")\b", re.I)
_MONTH_WORD = re.compile(r"\b(?:" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)
_SPOKEN_EMAIL = (
    (re.compile(r"\s+(?:dot|period)\s+", re.I), "."),
    (re.compile(r"\s+at\s+", re.I), "@"),
    (re.compile(r"\s+underscore\s+", re.I), "_"),
    (re.compile(r"\s+(?:dash|hyphen)\s+", re.I), "-"),
    (re.compile(r"\s+"), ""),
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGIT = re.compile(r"\d")
_DIGIT_WORD = re.compile(r"\b(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)\b", re.I)
_LETTER = re.compile(r"[A-Za-z]")


def _email(text: str) -> str | None:
    """An email address, also when spelled out ("maria dot lopez at gmail dot com")."""
    text = text.lower()
    for pattern, replacement in _SPOKEN_EMAIL:
        text = pattern.sub(replacement, text)
    return text if _EMAIL.fullmatch(text) else None


def _slot(slot: str, raw: str | None, *, strict: bool = False) -> _Found | None:
    """An identity fact for a common slot, or None when ``raw`` is no plausible value."""
    if raw is None:
        return None
    text = _trim(raw)
    if not text or len(text) > 100:
        return None
    words = len(text.split())
    if slot == "name":
        name = _name(text, strict=strict)
        return _Found(f"Name: {name}", IDENTITY, "name") if name else None
    if slot == "date_of_birth":
        ok = words <= 6 and bool(_DATE_LIKE.search(text))
        text = _MONTH_WORD.sub(lambda m: m[0].capitalize(), text)
        return _Found(f"Date of birth: {text}", IDENTITY, "date_of_birth") if ok else None
    if slot == "email":
        email = _email(text)
        return _Found(f"Email: {email}", IDENTITY, "email") if email else None
    if slot == "phone":
        digits = len(_DIGIT.findall(text)) + len(_DIGIT_WORD.findall(text))
        ok = digits >= 7 and len(text) <= 60
        return _Found(f"Phone number: {text}", IDENTITY, "phone") if ok else None
    if slot == "address":
        # "2140 Alder Street", or said in words: "forty two Elm Street".
        said = bool(_HAS_NUMBER.search(text) and _PLACE_WORD.search(text))
        ok = words <= 14 and bool(_LETTER.search(text)) and (bool(_DIGIT.search(text)) or said)
        return _Found(f"Address: {text}", IDENTITY, "address") if ok else None
    if slot == "home_city":
        ok = words <= 4 and not _DIGIT.search(text) and text.lower() not in _NAME_STOP
        return _Found(f"Lives in {_capitalise(text)}", LIFE, "home_city") if ok else None
    if slot == "insurance":
        ok = words <= 6 and text.lower() not in {"no", "none", "nope"}
        return _Found(f"Insurance: {text}", IDENTITY, "insurance") if ok else None
    return None


def _slot_rule(slot: str, *, strict: bool = False) -> _Build:
    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        return _slot(slot, match["x"], strict=strict)

    return build


def _first_turn_name(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "This is Maria" / "I'm Maria" name the caller only when they introduce
    # themselves; later in the call "this is X" is about anything.
    first = match["x"].split(" ", 1)[0].lower()
    if not ctx.first_user_turn or first in _NOT_NAMES or first in _WEEKDAYS or first in _MONTHS:
        return None
    return _slot("name", match["x"], strict=True)


_NOT_NAMES = frozenset(
    _words(
        """
    sorry good fine okay ok great calling just not here trying looking hoping new
    glad happy so really allergic nervous worried the a an
    """
    )
)

_IRREGULAR = {
    "have": "has",
    "do": "does",
    "go": "goes",
    "be": "is",
    "am": "is",
    "don't": "doesn't",
    "can't": "can't",
    "can": "can",
    "won't": "won't",
}
_ES_ENDING = re.compile(r"(?:s|sh|ch|x|z|o)$", re.I)
_Y_ENDING = re.compile(r"[^aeiou]y$", re.I)
# Verbs conjugated after "and" in a habit ("brush and floss" -> "brushes and flosses").
_COMMON_VERBS = frozenset(
    _words(
        """
    brush floss go walk run drink eat take work sleep wake get come read watch play
    use wear grind clench bite chew smoke vape exercise swim cycle bike drive cook
    rinse fly leave return
    """
    )
)
_AND_VERB = re.compile(r"\b(and|or) (" + "|".join(sorted(_COMMON_VERBS)) + r")\b", re.I)


def _third_singular(verb: str) -> str:
    """The third-person singular of a verb: "floss" -> "flosses", "carry" -> "carries"."""
    low = verb.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if _ES_ENDING.search(low):
        return verb + "es"
    if _Y_ENDING.search(low):
        return verb[:-1] + "ies"
    return verb + "s"


def _verb_phrase(verb: str, rest: str) -> str:
    """``verb rest`` as said of the caller: "brush my teeth" -> "brushes their teeth"."""
    rest = _third_person(rest)
    rest = _AND_VERB.sub(lambda m: f"{m[1]} {_third_singular(m[2])}", rest)
    return f"{_third_singular(verb)}{rest}"


# --------------------------------------------------------------------- the patterns

# Building blocks, as regex source.
I_AM = r"I(?:'m| am)"
I_HAVE = r"I(?:'ve| have)"
# Adverbs that may sit between subject and verb without changing the meaning.
ADV = (
    r"(?:(?:really|also|just|actually|recently|currently|still|kind of|kinda|sort of|"
    r"a bit|a little|a little bit|pretty|very|so|super|quite|extremely|severely|"
    r"definitely|honestly|now|seriously|terribly|incredibly|only|maybe|probably)\s+)*"
)

# Vocabulary, as regex alternatives.
_CONDITIONS = (
    r"(?:type (?:1|2|one|two) )?diabetes|asthma|(?:high|low) blood pressure|hypertension|"
    r"a heart condition|heart disease|heart problems|a heart murmur|a pacemaker|epilepsy|"
    r"seizures|arthritis|osteoporosis|sleep apnea|acid reflux|gerd|depression|cancer|"
    r"hepatitis(?: [abc])?|hiv|a bleeding disorder|ha?emophilia|kidney disease|"
    r"an artificial (?:hip|knee|joint|heart valve)|a (?:hip|knee) replacement|dry mouth|tmj|"
    r"gum disease|periodontal disease|celiac disease|lupus|a thyroid condition|"
    r"thyroid (?:problems|issues|disease)|copd|a weak immune system|high cholesterol"
)
_MEDICATION = (
    r"blood thinners|warfarin|coumadin|eliquis|xarelto|aspirin|insulin|metformin|statins?|"
    r"antibiotics|antidepressants|birth control|bisphosphonates|fosamax|prednisone|steroids|"
    r"lisinopril|levothyroxine|(?:my )?(?:blood pressure|heart|thyroid|diabetes) "
    r"(?:medication|medicine|meds|pills)|(?:medication|medicine|meds|pills) for"
)
_DRUGS = (
    r"penicillin|amoxicillin|ibuprofen|aspirin|codeine|novocaine|lidocaine|anesthesia|"
    r"anaesthesia|local anesthetic|antibiotics|nsaids|opioids|sulfa(?: drugs)?|latex|"
    r"epinephrine|nitrous(?: oxide)?|laughing gas|advil|tylenol|motrin"
)
_REL = (
    r"daughters?|sons?|wife|husband|partner|kids|children|child|baby|mom|mother|mum|dad|"
    r"father|parents|boyfriend|girlfriend|fianc[eé]e?|sisters?|brothers?|grandsons?|"
    r"granddaughters?|grandkids|grandchildren|grandma|grandmother|grandpa|grandfather|twins|"
    r"stepsons?|stepdaughters?|spouse|teenagers?|toddler|newborn"
)
# Who else a caller speaks of by name: people around them, and pets.
_KIN_EXTRA = (
    r"caregivers?|care ?takers?|(?:home (?:health )?)?aides?|nurse|neighbou?rs?|"
    r"(?:best )?friends?|roommates?|boss|co-?workers?|colleagues?|cousins?|aunts?|uncles?|"
    r"nieces?|nephews?|(?:mother|father|sons?|daughters?|brothers?|sisters?)-in-law|"
    r"step-?moms?|step-?dads?|step-?mothers?|step-?fathers?|godsons?|goddaughters?|"
    r"godmother|godfather|landlord|landlady|assistant|ex-wife|ex-husband|ex|grandbaby|"
    r"great-grandsons?|great-granddaughters?|doctor|physician|therapist|dentist|vet|manager|"
    r"teacher|instructor|coach|tutor|trainer|lawyer|attorney|accountant|realtor|contractor|"
    r"babysitter|nanny|housekeeper|groomer|dog walker|pediatrician|cardiologist|specialist|"
    r"surgeon|endo|endocrinologist|fianc[eé]e?|partner"
)
_PETS = (
    r"dogs?|cats?|pupp(?:y|ies)|kittens?|pups?|kitty|birds?|parrots?|rabbits?|bunn(?:y|ies)|"
    r"hamsters?|guinea pigs?|horses?|turtles?|tortoise|lizards?|snakes?|ferrets?|goldfish|"
    r"golden retriever|labrador|lab|retriever|terriers?|poodles?|beagles?|bulldogs?|"
    r"german shepherd|shepherd|husky|huskies|chihuahuas?|dachshunds?|corgis?|pugs?|"
    r"goldendoodle|labradoodle|doodle|tabby|pets?"
)
_KIN = f"{_REL}|{_KIN_EXTRA}|{_PETS}"

# What may follow "my daughter" for the rest to say something about her.
_VERBISH = (
    r"(?:is|'s|are|'re|was|were|has|have|had|just|also|recently|will|can|can't|cannot|"
    r"needs?|wants?|works?|lives?|goes|go|gets?|got|loves?|likes?|hates?|started|turned|"
    r"moved|plays?|attends?|studies|broke|takes?|graduated|passed|wears?|grinds?|"
    r"starts?|keeps?|uses?|(?-i:[a-z]{2,}s))\b"
)
_REL_IDLE = re.compile(
    r"^(?:is|'s|are|'re) (?:here|there|with me|fine|okay|ok|good|busy|next to me|calling|"
    r"on the (?:phone|line))\b",
    re.IGNORECASE,
)
_OCCUPATIONS = (
    r"nurse|teacher|doctor|physician|dentist|engineer|software engineer|developer|programmer|"
    r"student|lawyer|attorney|accountant|pharmacist|paramedic|firefighter|police officer|"
    r"cop|chef|cook|waiter|waitress|server|bartender|driver|truck driver|electrician|"
    r"plumber|carpenter|contractor|mechanic|designer|architect|consultant|manager|"
    r"salesperson|realtor|real estate agent|writer|journalist|musician|artist|photographer|"
    r"professor|researcher|scientist|therapist|social worker|pilot|flight attendant|"
    r"veterinarian|vet|farmer|hairdresser|barber|cashier|receptionist|secretary|"
    r"administrator|analyst|banker|librarian|soldier|veteran|caregiver|nanny|"
    r"stay-at-home (?:mom|dad|parent)|small business owner|business owner|freelancer|"
    r"(?:dental )?hygienist|surgeon|midwife|coach|personal trainer|clerk|janitor|"
    r"construction worker|mail carrier|postal worker"
)
_OCCUPATION_STATUS = (
    r"retired|self-employed|unemployed|between jobs|on disability|"
    r"on (?:maternity|paternity|sick|medical) leave|a full-time student|working from home"
)


_ALLERGIC = "Allergic to {x}"


def _named_relative(match: re.Match[str], ctx: _Context) -> _Found | None:
    name = _name(match["x"], strict=False)
    if name is None:
        return None
    rel = match["rel"].lower()
    plural = (rel.endswith("s") and rel != "boss") or rel == "children"
    if not plural:
        _meet(ctx, rel, name)
    article = "" if plural else _article(rel) + " "
    return _Found(f"Has {article}{rel} named {name}", LIFE)


_ONE_RELATIVE = re.compile(rf"^(?:a|an|one) (?:[\w-]+ )?(?P<rel>{_KIN})$", re.IGNORECASE)


def _has_relative(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    one = _ONE_RELATIVE.match(x)
    if one is not None:
        _meet(ctx, one["rel"], None)  # "I have a grandson. His name is Eli."
    return _Found(f"Has {x}", LIFE)


def _relative_says(match: re.Match[str], ctx: _Context) -> _Found | None:
    rest = match["x"]
    if _REL_IDLE.match(rest):
        return None
    x = _phrase(_expand_contraction(rest))
    if x is None:
        return None
    who = match["rel"].lower()
    name = match.groupdict().get("n")
    _meet(ctx, who, name)
    if name:
        who = f"{who} {name}"
    return _Found(f"{_capitalise(who)} {x}", LIFE)


# "'s" before a past participle is "has": "she's started", "he's never been".
_HAS_PARTICIPLE = re.compile(
    r"'s (?:(?:never|already|always|just|not|finally|recently|since|also) )?(?:got|gotten|been|"
    r"gone|done|seen|taken|had|become|started|stopped|moved|decided|finished|lost|gained|"
    r"changed|switched|booked|called|asked|agreed|applied|signed|joined|left|quit|tried)\b",
    re.IGNORECASE,
)
_CONTRACTED = re.compile(r"^'(s|re|ve|d|ll)\b")
_CONTRACTION_FULL = {"s": "is", "re": "are", "ve": "have", "d": "would", "ll": "will"}


def _expand_contraction(text: str) -> str:
    """A predicate that starts contracted ("'s pregnant"), written out ("is pregnant")."""
    match = _CONTRACTED.match(text)
    if match and match[1].lower() == "s" and _HAS_PARTICIPLE.match(text):
        return "has" + text[match.end() :]
    if match is None:
        return text
    return _CONTRACTION_FULL[match[1].lower()] + text[match.end() :]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _allergy_noun(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "a latex allergy" says the same as "allergic to latex"; one form dedupes them.
    x = _phrase(match["x"])
    if x is None:
        return None
    if " " in x:
        return _Found(f"Has {_article(x)} {x} allergy", HEALTH)
    return _Found(_ALLERGIC.format(x=x), HEALTH, continues=_ALLERGIC)


# When a move happened, said after the place: "... to Denver from Austin last month".
_WHEN_TAIL = re.compile(
    r",?\s+(?:(?:last|this|a few|a couple of|two|three|four|six|\d+) (?:weeks?|months?|years?)"
    r"(?: ago)?|yesterday|recently|in (?:" + "|".join(_MONTHS) + r")|(?:over )?the summer)$",
    re.IGNORECASE,
)


def _split_when(text: str | None) -> tuple[str | None, str]:
    """``text`` without a trailing time phrase, and that phrase (with its leading space)."""
    if text is None:
        return None, ""
    text = _trim(_HOME_TAIL.sub("", text))
    match = _WHEN_TAIL.search(text)
    if match is None:
        return text, ""
    return text[: match.start()], " " + match[0].strip(", ")


def _moved(match: re.Match[str], ctx: _Context) -> list[_Found] | None:
    raw_place, when = _split_when(match["x"])
    raw_before, before_when = _split_when(match["f"])
    when = when or before_when
    place = _phrase(raw_place)
    if place is None:
        return None
    # "Recently moved to Denver last month" says the same twice.
    recently = "Recently moved" if match["r"] and not when else "Moved"
    found = []
    if match["prep"].lower() == "into" or place.lower().startswith(("a ", "an ", "the ")):
        found.append(_Found(f"{recently} {match['prep'].lower()} {place}{when}", LIFE))
    else:
        found.append(_Found(f"{recently} to {place}{when}", LIFE, "home_city"))
    before = _phrase(raw_before)
    if before:
        found.append(_Found(f"Previously lived in {before}", LIFE))
    return found


def _moved_from(match: re.Match[str], ctx: _Context) -> _Found | None:
    raw, when = _split_when(match["x"])
    before = _phrase(raw)
    if before is None:
        return None
    if match["r"] or when:
        return _Found(f"{'Recently moved' if not when else 'Moved'} from {before}{when}", LIFE)
    return _Found(f"Previously lived in {before}", LIFE)


# "I live in Portland now": the "now" belongs to the sentence, not the city.
_HOME_TAIL = re.compile(r"(?:,?\s+(?:now|these days|at the moment|currently))+\s*$", re.I)


def _lives_away(match: re.Match[str], ctx: _Context) -> _Found | None:
    if match["x"]:
        place = _phrase(_HOME_TAIL.sub("", match["x"]))
        return _Found(f"Lives in {place}", LIFE, "home_city") if place else None
    return _Found(f"Lives {match['d'].lower()} away", LIFE)


def _lives_in(match: re.Match[str], ctx: _Context) -> _Found | None:
    place = _phrase(_HOME_TAIL.sub("", match["x"]))
    if place is None:
        return None
    prep = match["prep"].lower()
    # Only "in <place>" names the home city; "in an apartment" or "near the park" do not.
    city = prep == "in" and not place.lower().startswith(("a ", "an ", "the ", "their "))
    # "at 42 Elm Street" is the home address: a new one replaces it.
    street = prep in ("at", "on") and bool(_DIGIT.search(place) or _HAS_NUMBER.match(place))
    key = "home_city" if city else "address" if street else None
    return _Found(f"Lives {prep} {place}", LIFE, key)


def _preferred_name(text: str) -> _Found | None:
    name = _name(text, strict=True)
    if name is None:
        return None
    return _Found(f"Prefers to be called {name}", IDENTITY, "preferred_name")


def _born(match: re.Match[str], ctx: _Context) -> _Found | None:
    text = match["x"]
    if text.lower().startswith("in ") and not _DIGIT.search(text):
        place = _phrase(text[3:])
        return _Found(f"Born in {place}", LIFE) if place else None
    return _slot("date_of_birth", text)


_USER_RULES: tuple[_Rule, ...] = (
    # -- health: allergies, conditions, medication
    _rule(rf"^{I_AM} {ADV}allergic to (?P<x>.+)", _fmt(_ALLERGIC, HEALTH, continues=_ALLERGIC)),
    _rule(
        r"^I(?:'ve| have)?(?: got)? (?:an? |some )?(?:severe |serious |bad |mild )?"
        r"allerg(?:y|ies) to (?P<x>.+)",
        _fmt(_ALLERGIC, HEALTH, continues=_ALLERGIC),
    ),
    _rule(
        r"^I(?:'ve| have)?(?: got)? (?:an? |some )?(?:severe |serious |bad |mild )?"
        r"(?P<x>(?:[\w-]+ ){0,2}?[\w-]+) allerg(?:y|ies)$",
        _allergy_noun,
    ),
    _rule(
        rf"^(?:I have|{I_HAVE} got|I suffer from|{I_HAVE} had) "
        rf"(?P<x>(?:(?:mild|severe|bad|chronic) )?(?:{_CONDITIONS})\b.*)",
        _fmt("Has {x}", HEALTH),
    ),
    _rule(
        r"^I(?: was|'ve been| have been) diagnosed with (?P<x>.+)",
        _fmt("Diagnosed with {x}", HEALTH),
    ),
    _rule(
        rf"^{I_AM} {ADV}(?P<x>(?:a )?(?:type \w+ )?diabetic|pre-?diabetic|pregnant|asthmatic|"
        r"epileptic|ana?emic|immunocompromised|on dialysis|on blood thinners|"
        r"on (?:medication|meds) for .+|hard of hearing|deaf|blind)$",
        _fmt("Is {x}", HEALTH),
    ),
    _rule(rf"^I {ADV}take (?P<x>(?:{_MEDICATION})\b.*)", _fmt("Takes {x}", HEALTH)),
    _rule(
        rf"^I {ADV}(?:use|wear|have) (?P<x>(?:an? )?(?:inhaler|cpap(?: machine)?|"
        r"hearing aids?|insulin pump|epipen|epi-pen)\b.*)",
        _fmt("Uses {x}", HEALTH),
    ),
    _rule(
        rf"^I (?:can't|cannot|can not) (?:take|have|use|tolerate) (?P<x>(?:{_DRUGS})\b.*)",
        _fmt("Cannot take {x}", HEALTH, continues="Cannot take {x}"),
    ),
    # -- identity and contact details
    _rule(r"^my (?:full |first )?name(?:'s| is) (?P<x>.+)", _slot_rule("name")),
    _rule(
        r"^(?:you can |please |just )?call me (?P<x>.+)",
        lambda m, ctx: _preferred_name(m["x"]),
    ),
    _rule(r"^I go by (?P<x>.+)", lambda m, ctx: _preferred_name(m["x"])),
    _rule(r"^(?:this is|it's|it is) (?P<x>.+)", _first_turn_name),
    _rule(rf"^{I_AM} (?P<x>(?-i:[A-Z])[\w'-]*(?: (?-i:[A-Z])[\w'-]*)?)$", _first_turn_name),
    _rule(r"^(?P<x>(?-i:[A-Z])[a-z]+(?: (?-i:[A-Z])[a-z]+)?) (?:here|speaking)$", _first_turn_name),
    _rule(
        r"^my (?:date of birth|birth ?date|birthday|d\.?o\.?b\.?)(?:'s| is) (?P<x>.+)",
        _slot_rule("date_of_birth"),
    ),
    _rule(r"^I was born (?:on )?(?P<x>.+)", _born),
    _rule(r"^my (?:e-?mail|e-?mail address)(?:'s| is) (?P<x>.+)", _slot_rule("email")),
    _rule(
        r"^my (?:(?:cell |mobile |home |work )?phone(?: number)?|(?:cell|mobile) number|"
        r"number)(?:'s| is) (?P<x>.+)",
        _slot_rule("phone"),
    ),
    _rule(
        r"^my (?:new |home |mailing |street )?address(?:'s| is) (?P<x>.+)",
        _slot_rule("address"),
    ),
    _rule(
        r"^my (?:dental )?(?:insurance|insurer)(?: provider| company| carrier| plan)?"
        r"(?:'s| is) (?:with |through )?(?P<x>.+)",
        _slot_rule("insurance"),
    ),
    _rule(
        r"^I (?:have|'ve got|am with|'m with|am on|'m on) "
        r"(?P<x>(?-i:[A-Z])[\w&'-]*(?: (?-i:[A-Z])[\w&'-]*){0,3}) (?:dental )?"
        r"(?:insurance|coverage|plan)\b",
        _slot_rule("insurance"),
    ),
    _rule(
        r"^I (?:don't|do not) have (?:any )?(?:dental )?insurance\b",
        lambda m, ctx: _Found("Has no insurance", IDENTITY, "insurance"),
    ),
    # -- family
    _rule(
        rf"^(?:my|our) (?P<rel>{_KIN})(?:'s name is|'s name's|,? (?:is )?(?:called|named)) "
        r"(?P<x>.+)",
        _named_relative,
    ),
    _rule(
        rf"^(?:my|our) (?P<rel>{_KIN}),? (?P<n>(?-i:[A-Z])[a-z]+),? (?P<x>{_VERBISH}.*)",
        _relative_says,
    ),
    _rule(rf"^(?:my|our) (?P<rel>{_KIN}) (?P<x>{_VERBISH}.*)", _relative_says),
    _rule(
        rf"^(?:my|our) (?P<rel>{_KIN})(?P<x>'s (?:(?-i:[a-z]+ing)|been|got|not|never|always|still|"
        r"also|just|already|on|in|at|off|away|home|back|out|a|an|married|pregnant|sick|allergic|"
        r"diabetic|retired|okay|fine)\b.*)",
        _relative_says,
    ),
    _rule(
        r"^I have (?P<x>(?:a|an|one|two|three|four|five|six|\d+) (?:(?:little|young|grown|"
        rf"teenage|adult|older|younger|new|newborn|baby|twin|rescue|senior) )?(?:{_REL}|{_PETS})"
        r"\b.*)",
        _has_relative,
    ),
    _rule(
        rf"^{I_AM} (?P<x>married|divorced|single|widowed|engaged|separated|"
        r"a (?:single |stay-at-home |new |first-time )?(?:mom|mother|dad|father|parent|"
        r"grandmother|grandfather|grandparent|grandma|grandpa)(?: of [\w ]+)?)$",
        _fmt("Is {x}", LIFE),
    ),
    _rule(r"^I {ADV}live with (?P<x>.+)", _fmt("Lives with {x}", LIFE)),
    _rule(
        rf"^{I_AM} {ADV}(?:taking care of|caring for|looking after) (?P<x>.+)",
        _fmt("Takes care of {x}", LIFE),
    ),
    # -- work
    _rule(rf"^I {ADV}work (?:at|for) (?P<x>.+)", _fmt("Works at {x}", LIFE, key="employer")),
    _rule(
        rf"^I {ADV}(?:started|got) (?:a (?:new )?job |working )(?:at|for|with) (?P<x>.+)",
        _fmt("Works at {x}", LIFE, key="employer"),
    ),
    _rule(
        rf"^I {ADV}work as (?P<x>(?:a|an) .+)",
        _fmt("Works as {x}", LIFE, key="occupation"),
    ),
    _rule(
        rf"^{I_AM} {ADV}(?P<x>(?:a|an) (?:[\w-]+ ){{0,2}}?(?:{_OCCUPATIONS})"
        r"(?: (?:at|for|in|with) .+)?)$",
        _fmt("Is {x}", LIFE, key="occupation"),
    ),
    _rule(
        rf"^{I_AM} {ADV}(?P<x>{_OCCUPATION_STATUS})\b",
        _fmt("Is {x}", LIFE, key="occupation"),
    ),
    _rule(rf"^{I_AM} {ADV}(?P<x>(?:a )?new patient)\b", _fmt("Is a new patient", LIFE)),
    _rule(
        rf"^{I_AM} {ADV}(?:a )?(?:regular |long-?time |current |existing )?patient "
        r"(?:of|with) (?P<x>.+)",
        _fmt("Is a patient of {x}", LIFE),
    ),
    # -- home
    _rule(
        rf"^(?:I|we) {ADV}live (?:(?:about|around|like|maybe) )?(?P<d>(?:[\w-]+ ){{1,2}}"
        r"(?:minutes?|miles?|hours?|blocks?)) away(?: (?:from here|from you))?"
        r"(?: in (?P<x>.+))?$",
        _lives_away,
    ),
    _rule(
        rf"^(?:I|we) {ADV}live (?P<prep>in|near|outside(?: of)?|at|on|by) (?P<x>.+)",
        _lives_in,
    ),
    _rule(
        rf"^(?:(?:I|we)(?:'ve| have)? )?(?P<r>{ADV}(?:just|recently) )?moved (?:here |back )?"
        r"(?P<prep>to|into) (?P<x>.+?)(?: from (?P<f>.+))?$",
        _moved,
    ),
    _rule(
        rf"^(?:(?:I|we)(?:'ve| have)? )?(?P<r>{ADV}(?:just|recently) )?{ADV}moved "
        r"(?:here |over )?from (?P<x>.+)",
        _moved_from,
    ),
    _rule(r"^I used to live (?:in|at|on) (?P<x>.+)", _fmt("Previously lived in {x}", LIFE)),
    _rule(
        rf"^{I_AM} (?:originally )?from (?P<x>(?-i:[A-Z]).+)",
        _fmt("Originally from {x}", LIFE),
    ),
    _rule(
        rf"^{I_AM} {ADV}(?:based|located) (?:in|out of) (?P<x>.+)",
        _fmt("Lives in {x}", LIFE, key="home_city"),
    ),
)


_FEELINGS = (
    r"nervous|anxious|worried|scared|afraid|terrified|frightened|stressed(?: out)?|panicky|"
    r"uneasy|concerned|frustrated|annoyed|angry|mad|upset|disappointed|sad|embarrassed|"
    r"self-conscious|overwhelmed|apprehensive|unhappy|uncomfortable|fed up|tired|sick|happy|"
    r"glad|excited|thrilled|relieved|grateful|pleased|satisfied|confident|comfortable"
)
# Said of a conversation's moment ("glad to hear that") as often as of the caller's life:
# kept only with an object ("happy with my new crown").
_POSITIVE = frozenset(
    _words("happy glad excited thrilled relieved grateful pleased satisfied confident comfortable")
)
# Need an object to mean a feeling: "tired of waiting", not "I'm tired".
_NEEDS_OBJECT = frozenset(_words("tired sick fed"))
_PRONOUN_OBJECT = re.compile(
    r"^(?:(?:about|of|with|for|by|at) )?(?:it|that|this|them|those|these|him|her|you|everything"
    r"|all that|all of (?:it|that))$",
    re.IGNORECASE,
)
_DENTAL = (
    r"tooth|teeth|molars?|fillings?|crowns?|gums?|jaw|implants?|bridge|dentures?|retainer|"
    r"braces|wisdom tooth|wisdom teeth|cap|veneers?|root canal|mouth|tongue|lips?|cheek|bite"
)
_PROBLEM_STATE = (
    r"broken|broke|cracked|chipped|loose|sore|swollen|bleeding|infected|sensitive|hurting|"
    r"aching|throbbing|killing me|painful|bothering me|acting up|falling out|falling apart|"
    r"irritated|inflamed|numb|stuck|wobbly|getting worse|worse|not working|damaged|"
    r"discolou?red|stained|tender|uncomfortable|stolen|lost|hacked|compromised|skimmed|"
    r"leaking|dripping|running|clogged|flooding|overflowing|dropping|cutting out|flickering|"
    r"beeping|banging|making (?:a |this |that )?(?:\w+ )?noise|"
    r"declined|frozen|locked|blocked|cloned|missing|overdrawn"
)
_PROBLEM_VERB = (
    r"hurts?|aches?|throbs?|bleeds?|broke|cracked|chipped|fell out|came out|came off|fell off|"
    r"stings?|clicks?|pops?"
)
_PROBLEM_PREDICATE = (
    r"(?:(?:is|are|was|were|has been|have been|keeps?|kept|started|feels?|seems?|'s|'re|"
    rf"'s been|'ve been|got|gets|is getting) {ADV}(?:{_PROBLEM_STATE})|(?:{_PROBLEM_VERB}))\b"
)
_PROBLEM_WORD = (
    r"toothache|tooth ache|aches?|pains?|cavity|cavities|abscess|infection|swelling|"
    r"sensitivity|bleeding|headaches?|migraines?|ulcers?|sores?|lump|problems?|issues?|"
    r"trouble|hole|chipped|cracked|broken|loose"
)
_FREQUENCY = (
    r"every (?:single )?(?:other )?(?:day|morning|night|evening|week|weekend|month|year|"
    r"(?:few|couple of|\d+|two|three|four|six) (?:days|weeks|months|years)|"
    + "|".join(_WEEKDAYS)
    + r")|each (?:day|morning|night|evening|week)|(?:once|twice|three times|\d+ times) "
    r"(?:a|per) (?:day|week|month|year)|daily|nightly|weekly|monthly|"
    r"on (?:weekends|weekdays|" + "|".join(d + "s" for d in _WEEKDAYS) + r")|"
    r"most (?:days|mornings|nights|evenings|weekends)"
)
_HABIT_ADVERBS = (
    r"usually|always|normally|typically|generally|often|never|rarely|seldom|sometimes|"
    r"regularly|frequently|constantly|occasionally|mostly"
)
# Verbs that are no habit of their own ("I usually would...", "I always think...").
_NOT_HABIT_VERBS = frozenset(
    _words("am was were will would could should can 'd 'm think guess mean wonder say")
)
_TIME = re.compile(
    r"\b(?:"
    + "|".join((*(d + "s?" for d in _WEEKDAYS), *_MONTHS))
    + r"|today|tonight|tomorrow|yesterday|mornings?|afternoons?|evenings?|nights?|noon|"
    r"midnight|weeks?|weekends?|months?|years?|[ap]m|o'clock|ago|last|next|earlier|later|"
    r"soon|recently|\d+(?:st|nd|rd|th)?|\d{1,2}:\d{2}|the (?:first|second)|"
    r"(?:twenty|thirty)[- ](?:first|second)|third|fourth|fifth|"
    r"sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|"
    r"sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth|twenty-?\w+(?:st|nd|rd|th)|"
    r"spring|summer|fall|autumn|winter|christmas|thanksgiving|easter|"
    r"at (?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve))\b",
    re.IGNORECASE,
)
_PREFERRED_TIME = re.compile(
    r"\b(?:mornings?|afternoons?|evenings?|nights?|early|late|weekends?|weekdays?|"
    r"lunch(?:time)?|after work|before work|noon|o'clock|\d+ ?(?:am|pm)|"
    + "|".join(d + "s?" for d in _WEEKDAYS)
    + r")\b",
    re.IGNORECASE,
)
_CONTACT = re.compile(
    r"\b(?:texts?|text messages?|sms|e-?mails?|phone calls?|calls?|voicemails?|reminders?|"
    r"calling|texting|emailing)\b",
    re.IGNORECASE,
)
_APPOINTMENT = (
    r"appointments?|cleanings?|check-?ups?|exams?|fillings?|crowns?|root canal|extractions?|"
    r"consultations?|consults?|whitening|x-rays?|visits?|follow-?ups?|procedures?|surgery|"
    r"implants?"
)
_SPECIFIC_APPOINTMENT = re.compile(
    r"\b(cleaning|check-?up|exam|filling|crown|root canal|extraction|consultation|"
    r"whitening|x-ray|follow-?up|implant|surgery)s?\b",
    re.IGNORECASE,
)
_APPOINTMENT_WORD = re.compile(rf"\b(?:{_APPOINTMENT})\b", re.IGNORECASE)
# What the caller asks the agent to do in the call, and which confirmation fulfils it.
_REQUESTS = (
    (re.compile(r"^(?:cancel|call off)\b", re.I), "cancel"),
    (re.compile(r"^(?:move|reschedule|change|push|switch|bump)\b", re.I), "move"),
    (re.compile(r"^(?:book|schedule|make|set up|get|come in|see|confirm)\b", re.I), "book"),
)
_STRONG_REQUEST = re.compile(r"^(?:cancel|reschedule|book|schedule)\b", re.I)
# Plans that are only the call's small talk: "I'd like to ask", "I need to go".
_NOT_A_PLAN = re.compile(
    r"^(?:thank|ask|know|check|confirm|say|talk|speak|tell|hear|clarify|understand|"
    r"see (?:if|whether|what|when|how)|find out|hang up|go(?: now)?$|think|hold|wait|"
    r"take (?:it|that|this|the)\b|do (?:it|that|this)\b|get going|let you|double[- ]check|"
    r"call (?:you|back)|be sure|wonder|get back|leave a message|go ahead|go with|make sure|"
    r"update|verify|give you|spell)",
    re.IGNORECASE,
)
# "I'll ..." is mostly the call's mechanics ("I'll hold", "I'll take it"); a plan has a date.
_WILL_MECHANICS = re.compile(r"^(?:take|hold|wait|see|do|call|try|be there|get back)\b", re.I)


_IT_OBJECT = re.compile(r"^(?:about|of) (?:it|that|this)$", re.IGNORECASE)


def _feeling(match: re.Match[str], ctx: _Context) -> _Found | None:
    feeling = match["f"].lower()
    rest = _trim(match["x"] or "")
    if rest.lower().startswith("because of "):
        rest = "about " + rest[len("because of ") :]
    has_object = bool(rest) and not _PRONOUN_OBJECT.match(rest)
    if feeling.split()[0] in _NEEDS_OBJECT and not has_object:
        return None
    if feeling in _POSITIVE and not (
        has_object and rest.lower().startswith(("about ", "with ", "that "))
    ):
        return None
    if not has_object:
        about = _IT_OBJECT.match(rest)
        kind = _SPECIFIC_APPOINTMENT.findall(ctx.turns[ctx.turn]) if about else []
        if kind:
            # "I'm booked for a root canal and I'm nervous about it": "it" is the root canal.
            return _Found(f"{_capitalise(feeling)} about the {kind[-1].lower()}", FEELING)
        return _Found(f"Feels {feeling}", FEELING)
    phrase = _phrase(rest)
    if phrase is None:
        return None
    if not phrase.lower().startswith(("about ", "of ", "with ", "that ", "for ", "to ")):
        phrase = "that " + phrase
    return _Found(f"{_capitalise(feeling)} {phrase}", FEELING)


def _caused_feeling(match: re.Match[str], ctx: _Context) -> _Found | None:
    cause = match["x"]
    if _PRONOUN_OBJECT.match(cause) or cause.lower() in {"what", "which", "everything"}:
        return None
    verb = match["v"].lower()
    cause = _lower_first(_third_person(cause))
    if verb.startswith(("scare", "terrif", "frighten", "freak")):
        return _Found(f"Scared of {cause}", FEELING)
    if verb.startswith("worr"):
        return _Found(f"Worried about {cause}", FEELING)
    if verb.startswith("stress"):
        return _Found(f"Stressed about {cause}", FEELING)
    feeling = match["f"]
    if feeling is None:
        return None
    return _Found(f"{_capitalise(feeling.lower())} about {cause}", FEELING)


def _gets_feeling(match: re.Match[str], ctx: _Context) -> _Found | None:
    rest = _phrase(match["x"]) or ""
    how = (match["a"] or "").strip().lower()
    verb = "tends to get" if how == "tend to" else (f"{how} gets" if how else "gets")
    return _Found(_capitalise(f"{verb} {match['f'].lower()} {rest}".strip()), FEELING)


def _problem(match: re.Match[str], ctx: _Context) -> _Found | None:
    subject = _trim(match["s"])
    predicate = _phrase(match["p"])
    if predicate is None or _REL_WORD.fullmatch(subject):
        return None
    subject = _capitalise(_third_person(subject))
    ctx.problem_subject = subject
    return _Found(f"{subject} {_expand_contraction(predicate)}", PROBLEM)


def _it_problem(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "It hurts when I chew" only means something after the caller said what "it" is.
    if ctx.problem_subject is None:
        return None
    predicate = _phrase(match["p"])
    if predicate is None:
        return None
    return _Found(f"{ctx.problem_subject} {_expand_contraction(predicate.lstrip())}", PROBLEM)


_DAMAGED_PART = re.compile(rf"^(?:a|an|my|one of my|the) (?P<n>(?:[\w-]+ )?(?:{_DENTAL}))\b", re.I)


def _damaged(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    part = _DAMAGED_PART.match(match["x"])
    if part:
        # What broke is what a later "it hurts" is about.
        ctx.problem_subject = _capitalise(part["n"].lower())
    return _Found(f"{match['v'].capitalize()} {x}", PROBLEM)


_REL_WORD = re.compile(rf"(?:{_KIN})", re.IGNORECASE)


def _has_problem(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    verb = match["v"].lower()
    if "been having" in verb:
        lead = "Has been having"
    elif "having" in verb:
        lead = "Having"
    elif verb.endswith("had"):
        lead = "Has had"
    else:
        lead = "Has"
    return _Found(f"{lead} {x}", PROBLEM)


def _habit(match: re.Match[str], ctx: _Context) -> _Found | None:
    verb = match["v"]
    if verb.lower() in _NOT_HABIT_VERBS:
        return None
    rest = _trim(match["x"] or "")
    how = match.groupdict().get("a")
    phrase = _verb_phrase(verb, f" {rest}" if rest else "")
    if how:
        phrase = f"{how.lower()} {phrase}"
    freq = match.groupdict().get("f")
    if freq:
        phrase = f"{phrase} {freq.lower()}"
    return _Found(_capitalise(phrase), HABIT)


def _dated(template: str, spec: _Spec, **kwargs: Any) -> _Build:
    """Like :func:`_fmt`, for things that only count with a date or time in them."""
    inner = _fmt(template, spec, **kwargs)

    def build(match: re.Match[str], ctx: _Context) -> _Found | list[_Found] | None:
        return inner(match, ctx) if _TIME.search(match["x"]) else None

    return build


def _past_event(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or not _TIME.search(x):
        return None
    return _Found(f"{_capitalise(match['v'].lower())} {x}", EVENT)


# "get it done", "do that": a plan whose object was said earlier means nothing alone.
_VAGUE_PLAN = re.compile(r"\b(?:you|it|that|this|them)\b(?!')", re.IGNORECASE)


def _plan(template: str, spec: _Spec = PLAN) -> _BuildOne:
    """A plan or wish; an appointment request is marked so the agent's confirmation can fold it."""

    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        raw = _trim(match["x"])
        if _NOT_A_PLAN.match(raw) or _VAGUE_PLAN.search(raw):
            return None
        x = _phrase(raw)
        if x is None:
            return None
        request = None
        if _STRONG_REQUEST.match(raw) or _APPOINTMENT_WORD.search(raw):
            request = next((kind for pattern, kind in _REQUESTS if pattern.match(raw)), None)
        return _Found(_capitalise(template.format(x=x)), spec, request=request)

    return build


def _will(match: re.Match[str], ctx: _Context) -> _Found | None:
    raw = _trim(match["x"])
    if _WILL_MECHANICS.match(raw) or not _TIME.search(raw):
        return None
    return _plan("Will {x}")(match, ctx)


def _calling_about(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    return _Found(f"Called about {x}", EVENT, request="any")


def _prefers(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or _PRONOUN_OBJECT.match(x):
        return None
    if _CONTACT.search(x):
        return _Found(f"Prefers {x}", MANNER, "contact_method")
    key = "preferred_time" if _PREFERRED_TIME.search(x) else None
    return _Found(f"Prefers {x}", PREFERENCE, key)


_CONTACTED = {"call": "called", "text": "texted", "email": "emailed", "e-mail": "emailed"}
_CONTACT_NOUN = {"text": "texts", "email": "emails", "e-mail": "emails"}


def _contact_me(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    how = _CONTACTED.get(match["v"].lower(), "reached")
    on = "" if x.lower().startswith("by ") else "on "
    return _Found(f"Prefers to be {how} {on}{x}", MANNER, "contact_method")


def _text_me(match: re.Match[str], ctx: _Context) -> _Found:
    # Only with a contrast ("instead", "rather than call"): a bare "email me" is usually
    # about one thing ("email me the forms"), not how they like to be reached.
    return _Found(f"Prefers {_CONTACT_NOUN[match['v'].lower()]} to calls", MANNER, "contact_method")


def _works_best(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is not None and _CONTACT.fullmatch(x):
        # "Text is best for me", "email works better".
        return _Found(f"Prefers {_lower_first(x)}", MANNER, "contact_method")
    if x is None or not _PREFERRED_TIME.search(x):
        return None
    return _Found(f"Prefers {_lower_first(x)}", PREFERENCE, "preferred_time")


# "the mint one", "that", "you guys": the object means nothing outside the call.
_VAGUE_OBJECT = re.compile(
    r"\b(?:you|that|it|this|one|ones)$|\byou\b|^(?:that|this|those|these)\b", re.IGNORECASE
)


def _likes(match: re.Match[str], ctx: _Context) -> _Found | None:
    raw = _trim(match["x"])
    if _PRONOUN_OBJECT.match(raw) or _VAGUE_OBJECT.search(raw):
        return None
    x = _phrase(raw)
    if x is None:
        return None
    verb = (match["v"] or match.groupdict().get("w") or "").lower()
    lead = {
        "like": "Likes",
        "love": "Loves",
        "enjoy": "Enjoys",
        "adore": "Loves",
        "hate": "Hates",
        "dislike": "Dislikes",
        "detest": "Hates",
        "can't stand": "Cannot stand",
        "cannot stand": "Cannot stand",
    }.get(verb, "Dislikes")
    return _Found(f"{lead} {x}", PREFERENCE)


def _time_dislike(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = match["x"]
    if not _PREFERRED_TIME.search(x):
        return None
    return _Found(_capitalise(_third_person(match[0])), PREFERENCE)


_FOR_WHAT = re.compile(
    rf"^for (?P<w>(?:a|an) (?:[\w-]+ )?(?:{_APPOINTMENT}))\b,? (?P<r>(?:on|at|for|next|this|"
    r"tomorrow|today|with)\b.*)$",
    re.IGNORECASE,
)


def _booked_for(rest: str) -> str:
    """The time part of a booking, introduced by "for": "on Thursday" -> "for Thursday"."""
    lowered = rest.lower()
    if lowered.startswith("on "):
        return "for " + rest[3:]
    if lowered.startswith(("next ", "this ", "tomorrow", "today", "tonight")):
        return "for " + rest
    return rest


def _user_booked(match: re.Match[str], ctx: _Context) -> _Found | None:
    rest = _trim(match["x"])
    what = _FOR_WHAT.match(rest)
    if what is None or not _TIME.search(rest):
        return None
    content = f"Has {what['w']} booked {_booked_for(_third_person(what['r']))}"
    return _Found(content, EVENT, request="any")


_REALISED = {"realized": "Realised", "realise": "Realises", "realize": "Realises"}

_MORE_USER_RULES: tuple[_Rule, ...] = (
    # -- reflective: decisions, goals, realisations
    _rule(
        rf"^(?:{I_HAVE} |I )?{ADV}(?:finally )?decided (?P<x>(?:to|that|on|against) .+)",
        _fmt("Decided {x}", GOAL),
    ),
    _rule(rf"^{I_HAVE} made up my mind to (?P<x>.+)", _fmt("Decided to {x}", GOAL)),
    _rule(
        rf"^I {ADV}(?:finally )?(?P<v>realised|realized|realise|realize|figured out|learned|"
        r"learnt|discovered)"
        r" (?:that )?(?P<x>.+)",
        lambda m, ctx: _fmt(_REALISED.get(m["v"].lower(), m["v"].capitalize()) + " {x}", INSIGHT)(
            m, ctx
        ),
    ),
    _rule(r"^my (?:main |big |real )?goal is (?:to )?(?P<x>.+)", _fmt("Goal is to {x}", GOAL)),
    _rule(rf"^{I_AM} {ADV}(?:determined|committed) to (?P<x>.+)", _fmt("Determined to {x}", GOAL)),
    _rule(rf"^{I_AM} {ADV}trying to (?P<x>.+)", _fmt("Trying to {x}", GOAL)),
    _rule(rf"^{I_HAVE} been trying to (?P<x>.+)", _fmt("Has been trying to {x}", GOAL)),
    _rule(
        r"^I {ADV}(?:should|ought to) (?:probably |really )?(?P<x>.+)",
        _fmt("Thinks they should {x}", GOAL),
    ),
    # -- feelings
    _rule(
        rf"^{I_AM} not {ADV}(?P<x>(?:happy|satisfied|pleased|comfortable|thrilled) with .+)",
        _fmt("Not {x}", FEELING),
    ),
    _rule(
        rf"^{I_AM} {ADV}(?P<f>{_FEELINGS})(?: up)?(?P<x>(?: .+)?)$",
        _feeling,
    ),
    _rule(
        rf"^I {ADV}(?:feel|{I_HAVE} been feeling) {ADV}(?P<f>{_FEELINGS})(?P<x>(?: .+)?)$",
        _feeling,
    ),
    _rule(
        rf"^I (?P<a>(?:always|usually|often|sometimes|tend to) )?get {ADV}(?P<f>{_FEELINGS})"
        r"(?P<x>(?: .+)?)$",
        _gets_feeling,
    ),
    _rule(
        r"^I (?:have|'ve got|suffer from) (?:really |really bad |bad |severe |some |"
        r"a lot of |terrible )?(?P<x>(?:dental )?(?:anxiety|phobia|fear of .+))",
        _fmt("Has {x}", FEELING),
    ),
    _rule(
        rf"^(?:{I_HAVE} had|I had) (?P<x>(?:a |some )?{ADV}(?:bad|terrible|awful|horrible|"
        r"traumatic|rough|painful|scary) (?:experiences?|time)\b.*)",
        _fmt("Had {x}", FEELING),
    ),
    _rule(
        rf"^(?P<x>(?:[\w'-]+ ){{0,5}}?[\w'-]+) {ADV}(?P<v>scares?|terrif(?:ies|y)|frightens?|"
        rf"worries|worry|stresses|stress|freaks?|makes?|made) me(?: out)?(?: {ADV}"
        rf"(?P<f>{_FEELINGS}))?\b",
        _caused_feeling,
    ),
    # -- problems
    _rule(
        rf"^my (?P<s>(?:[\w'-]+ ){{0,4}}?[\w'-]+) (?P<p>{_PROBLEM_PREDICATE}.*)",
        _problem,
    ),
    _rule(
        rf"^(?:the|this|that|one of (?:my|the)) (?P<s>(?:[\w'-]+ ){{0,2}}?(?:{_DENTAL})) "
        rf"(?P<p>{_PROBLEM_PREDICATE}.*)",
        _problem,
    ),
    _rule(
        r"^the (?P<s>(?:[\w'-]+ ){0,2}?[\w'-]+) (?P<p>(?:is|are|has been|have been|keeps?|"
        r"started|'s been|won't stop) (?:\w+ )?(?:leaking|dripping|running|clogged|flooding|"
        r"overflowing|dropping|cutting out|flickering|beeping|banging|broken|not working|"
        r"making (?:a |this |that )?(?:\w+ )?noise)\b.*)",
        _problem,
    ),
    _rule(
        rf"^it(?P<p>(?:'s|'s been| is| has been| keeps| still| also)? ?{ADV}(?:"
        rf"{_PROBLEM_STATE}|{_PROBLEM_VERB})\b.*)",
        _it_problem,
    ),
    _rule(
        rf"^(?P<v>I have|{I_HAVE} got|{I_HAVE} been having|{I_AM} having|I got|{I_HAVE} had) "
        rf"(?P<x>(?!no\b|any\b)(?:.*? )?(?:{_PROBLEM_WORD})\b.*)",
        _has_problem,
    ),
    _rule(
        rf"^{I_AM} {ADV}(?P<x>in (?:a lot of |so much |some )?pain|sore|hurting|bleeding|sick|"
        r"unwell|not feeling well)\b(?P<y>.*)",
        lambda m, ctx: _fmt("Is {x}", PROBLEM)(m, ctx),
    ),
    _rule(rf"^{I_AM} {ADV}sensitive to (?P<x>.+)", _fmt("Sensitive to {x}", PROBLEM)),
    _rule(
        r"^I (?:can't|cannot|can not) (?P<x>(?:chew|bite|eat|sleep|drink|open my mouth|"
        r"close my mouth|swallow)\b.*)",
        _fmt("Cannot {x}", PROBLEM),
    ),
    _rule(
        rf"^I {ADV}(?P<v>lost|broke|chipped|cracked|knocked out|bit through) (?P<x>.+)", _damaged
    ),
    # -- habits
    _rule(
        rf"^I {ADV}(?P<a>{_HABIT_ADVERBS}) (?P<v>[a-z']+)(?P<x>(?: .+)?)$",
        _habit,
    ),
    _rule(
        rf"^{I_AM} (?P<a>{_HABIT_ADVERBS}) (?P<x>.+)",
        lambda m, ctx: _fmt(f"Is {m['a'].lower()} " + "{x}", HABIT)(m, ctx),
    ),
    _rule(rf"^(?P<f>{_FREQUENCY}),? I (?P<v>[a-z']+)(?P<x>(?: .+)?)$", _habit),
    _rule(rf"^I {ADV}(?P<v>[a-z']+)(?P<x> (?:.+ )?(?:{_FREQUENCY})\b.*)$", _habit),
    _rule(
        rf"^{I_AM} (?P<x>(?:a )?(?:heavy |light |social |former |ex-)?(?:smoker|drinker|"
        r"runner|early riser|night owl))\b",
        _fmt("Is {x}", HABIT),
    ),
    _rule(
        rf"^I {ADV}(?P<v>smoke|vape|grind|clench|snore|floss|brush|exercise|jog)\b"
        r"(?P<x>(?: .+)?)$",
        _habit,
    ),
    _rule(
        r"^I work (?P<x>(?:nights|night shifts?|days|weekends|weekdays|evenings|from home|"
        r"remotely|long hours|two jobs|shifts|early mornings|late|full[- ]time|part[- ]time)\b.*)",
        _fmt("Works {x}", HABIT),
    ),
    _rule(r"^I {ADV}tend to (?P<x>.+)", _fmt("Tends to {x}", HABIT)),
    # -- events the caller tells of
    _rule(rf"^{I_AM} {ADV}(?:booked|scheduled) (?:in )?(?P<x>for .+)", _user_booked),
    _rule(
        rf"^(?:I have|{I_HAVE} got) (?P<x>(?:a|an|my|another) (?:[\w-]+ ){{0,2}}?"
        rf"(?:{_APPOINTMENT})\b.*)",
        _dated("Has {x}", EVENT, request="any"),
    ),
    _rule(
        r"^I (?P<v>had|got|went|saw|visited|started|finished|stopped|quit|gave up|switched) "
        r"(?P<x>.+)",
        _past_event,
    ),
    # -- plans and wishes
    _rule(rf"^{I_AM} {ADV}calling (?:to|in order to) (?P<x>.+)", _plan("Wants to {x}")),
    _rule(
        rf"^{I_AM} {ADV}calling (?:about|regarding|because of|for) (?P<x>.+)",
        _calling_about,
    ),
    _rule(rf"^{I_AM} {ADV}moving (?P<x>(?:back )?to .+)", _plan("Moving {x}")),
    _rule(rf"^I(?:'d| would) {ADV}(?:like|love) to (?P<x>.+)", _plan("Wants to {x}")),
    _rule(rf"^I {ADV}(?:want to|wanna) (?P<x>.+)", _plan("Wants to {x}")),
    _rule(rf"^I {ADV}need to (?P<x>.+)", _plan("Needs to {x}")),
    _rule(rf"^(?:I have|{I_HAVE} got|I gotta|I got) to (?P<x>.+)", _plan("Has to {x}")),
    _rule(rf"^{I_AM} {ADV}(?:going to|gonna) (?P<x>.+)", _plan("Going to {x}")),
    _rule(rf"^{I_AM} {ADV}planning (?P<x>(?:to|on) .+)", _plan("Planning {x}")),
    _rule(rf"^I {ADV}plan (?:to|on) (?P<x>.+)", _plan("Plans to {x}")),
    _rule(rf"^{I_AM} {ADV}(?:hoping|looking) to (?P<x>.+)", _plan("Hoping to {x}")),
    _rule(rf"^I {ADV}hope to (?P<x>.+)", _plan("Hopes to {x}")),
    _rule(rf"^{I_AM} {ADV}thinking (?:about|of) (?P<x>.+)", _plan("Thinking about {x}")),
    _rule(rf"^{I_HAVE} been meaning to (?P<x>.+)", _plan("Has been meaning to {x}")),
    _rule(r"^I(?:'ll| will) (?P<x>.+)", _will),
    _rule(
        rf"^(?:{I_AM}|we(?:'re| are)) {ADV}(?P<v>relocating|retiring|travell?ing|going away|"
        r"having|getting|"
        r"starting|leaving|flying|visiting|expecting)\b(?P<x>.*)",
        lambda m, ctx: _dated(m["v"].capitalize() + " {x}", PLAN)(m, ctx),
    ),
    # -- preferences
    _rule(
        r"^(?:please )?(?:(?:always|only|just) )?(?P<v>call|text|email|e-mail|reach|contact) "
        r"(?:me )?(?:on |at )?(?P<x>(?:my (?:cell|mobile|work|home)(?: phone| number)?|"
        r"by (?:text|email|phone))\b.*)",
        _contact_me,
    ),
    _rule(
        r"^(?:please )?(?:(?:always|only|just) )?(?P<v>text|email|e-mail) me,? (?:instead|"
        r"rather than (?:call|calling|phone|phoning)(?: me)?|not call(?: me)?)$",
        _text_me,
    ),
    _rule(rf"^I(?:'d| would)? {ADV}prefer(?:red)? (?P<x>.+)", _prefers),
    _rule(rf"^I(?:'d| would) {ADV}rather (?P<x>.+)", _fmt("Would rather {x}", PREFERENCE)),
    _rule(
        r"^(?:the )?(?P<x>(?:[\w':]+ ){0,4}?[\w':]+) (?:work|works|is|are|suit|suits)(?: me)? "
        r"(?:the )?(?:best|better)\b",
        _works_best,
    ),
    _rule(
        r"^(?P<x>(?:[\w':]+ ){0,3}?[\w':]+s) (?:don't|do not|never) (?:really )?work"
        r"(?: for me| well)\b.*",
        _time_dislike,
    ),
    _rule(r"^I (?:can't|cannot|can not) do (?P<x>(?:[\w':]+ ){0,3}?[\w':]+s)$", _time_dislike),
    _rule(
        rf"^{I_AM} (?P<x>(?:not )?(?:a|more of an?) (?:morning|night|evening|afternoon) person)",
        _fmt("Is {x}", PREFERENCE),
    ),
    _rule(
        rf"^I {ADV}(?:(?P<v>don't|do not) (?:really )?(?:like|love|enjoy)|"
        r"(?P<w>dislike|hate|detest|can't stand|cannot stand)) (?P<x>.+)",
        _likes,
    ),
    _rule(rf"^I {ADV}(?P<v>like|love|enjoy|adore) (?P<x>.+)", _likes),
    _rule(
        rf"^{I_AM} not (?:a (?:big |huge )?fan of|into|big on) (?P<x>.+)",
        _fmt("Not a fan of {x}", PREFERENCE),
    ),
)

# ---------------------------------------- accounts, health, money, travel, people, pets

FRAUD = _Spec("episodic", "problem", 0.7)

# -- medication and doses

_DOSE_UNIT = re.compile(
    r"\b(?:mg|milligrams?|mcg|micrograms?|units?|ml|milliliters?|millilitres?|cc|grams?|"
    r"pills?|tablets?|capsules?|puffs?|doses?|shots?|injections?)\b",
    re.IGNORECASE,
)
# Medications by name (brand or generic), and the endings of generic names.
_DRUG_NAMES = frozenset(
    _words(
        """
    metformin insulin lisinopril atorvastatin lipitor simvastatin rosuvastatin crestor
    pravastatin amlodipine norvasc losartan valsartan metoprolol atenolol carvedilol
    propranolol hydrochlorothiazide hctz furosemide lasix spironolactone warfarin
    coumadin eliquis apixaban xarelto rivaroxaban clopidogrel plavix aspirin
    levothyroxine synthroid omeprazole prilosec pantoprazole nexium famotidine pepcid
    gabapentin neurontin lyrica pregabalin sertraline zoloft fluoxetine prozac
    escitalopram lexapro citalopram celexa bupropion wellbutrin trazodone duloxetine
    cymbalta venlafaxine effexor paxil paroxetine alprazolam xanax lorazepam ativan
    clonazepam klonopin diazepam valium zolpidem ambien melatonin adderall ritalin
    vyvanse concerta methylphenidate prednisone albuterol advair symbicort singulair
    montelukast ozempic wegovy mounjaro zepbound trulicity jardiance januvia farxiga
    glipizide glimepiride humalog lantus novolog tresiba semaglutide tirzepatide
    ibuprofen advil motrin tylenol acetaminophen naproxen aleve tramadol oxycodone
    hydrocodone vicodin percocet morphine codeine methotrexate humira enbrel
    allopurinol colchicine tamsulosin flomax finasteride donepezil aricept memantine
    namenda lithium seroquel quetiapine abilify aripiprazole risperdal risperidone
    lamotrigine lamictal keppra levetiracetam topiramate topamax depakote digoxin
    nitroglycerin amoxicillin penicillin azithromycin doxycycline cipro keflex
    cephalexin estradiol estrogen testosterone progesterone b12 potassium magnesium
    """
    )
)
_DRUG_PHRASES = ("vitamin d", "iron pills", "folic acid", "fish oil")
_DRUG_ENDINGS = (
    "pril",
    "sartan",
    "olol",
    "statin",
    "formin",
    "prazole",
    "mycin",
    "cillin",
    "oxetine",
    "azepam",
    "azolam",
    "dipine",
    "gliptin",
    "flozin",
    "glutide",
    "tidine",
    "triptan",
    "profen",
    "cycline",
    "floxacin",
    "semide",
    "thiazide",
    "parin",
    "xaban",
    "lukast",
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


def _is_drug(word: str) -> bool:
    word = word.lower()
    return word in _DRUG_NAMES or (len(word) > 5 and word.endswith(_DRUG_ENDINGS))


def _drugs(text: str) -> list[str]:
    """The medications ``text`` names, lowercase, in order."""
    found = [w.lower() for w in _WORD.findall(text) if _is_drug(w)]
    lowered = text.lower()
    return found + [phrase for phrase in _DRUG_PHRASES if phrase in lowered]


_MED_UP = frozenset(_words("upped raised increased bumped doubled tripled up upping raising"))
_MED_DOWN = frozenset(_words("lowered reduced cut decreased dropped halved down lowering"))
_MED_VERBS = (
    r"upped|raised|increased|bumped(?: up| down)?|doubled|tripled|lowered|reduced|cut|"
    r"decreased|dropped|halved|changed|adjusted"
)
# Who changed it: "they", "my doctor", "Dr. Shah", "the endocrinologist just"...
_WHO = r"(?:[\w.']+ ){0,3}?"


def _medication_key(drug: str) -> str:
    return "medication_" + _NON_WORD.sub("_", drug.lower()).strip("_")


def _drug_in(text: str) -> str | None:
    """The one drug ``text`` names, if it names exactly one."""
    drugs = set(_drugs(text))
    return drugs.pop() if len(drugs) == 1 else None


def _dose_change(match: re.Match[str], ctx: _Context) -> _Found | None:
    dose = _phrase(match["x"])
    drug = match["d"] or ctx.last_drug
    if dose is None or drug is None or not _HAS_NUMBER.search(dose):
        return None
    if not (_is_drug(drug) or _DOSE_UNIT.search(dose)):
        return None
    verb = (match["v"] or "changed").lower().split()[-1]
    verb = "bumped" if verb == "bumped" else verb
    how = "increased" if verb in _MED_UP else "lowered" if verb in _MED_DOWN else "changed"
    if match["v"] and match["v"].lower() == "bumped down":
        how = "lowered"
    before = _phrase(match["f"])
    since = f" from {before}" if before else ""
    return _Found(f"{_capitalise(drug)} dose {how}{since} to {dose}", HEALTH, _medication_key(drug))


def _dose_to(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "they upped me to a thousand milligrams of metformin"
    dose = _phrase(match["x"])
    drug = _drug_in(match["x"])
    if dose is None or drug is None or not _HAS_NUMBER.search(dose):
        return None
    verb = match["v"].lower().split()[-1]
    how = "increased" if verb in _MED_UP else "lowered" if verb in _MED_DOWN else "changed"
    return _Found(f"Dose {how} to {dose}", HEALTH, _medication_key(drug))


def _takes(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or not _drugs(x) or len(x.split()) > 14:
        return None
    drug = _drug_in(x)
    return _Found(f"Takes {x}", HEALTH, _medication_key(drug) if drug else None)


def _medication_event(template: str) -> _BuildOne:
    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        x = _phrase(match["x"])
        if x is None or len(x.split()) > 12 or not _drugs(x):
            return None
        drug = _drug_in(x)
        return _Found(template.format(x=x), HEALTH, _medication_key(drug) if drug else None)

    return build


def _switched_from(match: re.Match[str], ctx: _Context) -> _Found | None:
    before, after = _phrase(match["f"]), _phrase(match["x"])
    if before is None or after is None:
        return None
    drug = _drug_in(after)
    if drug is not None:
        return _Found(f"Switched from {before} to {after}", HEALTH, _medication_key(drug))
    if _PLAN_WORD.search(after) or _PLAN_WORD.search(before):
        return _Found(f"Switched from {before} to {after}", LIFE, "plan")
    return None


# -- plans, subscriptions, accounts

_PLAN_WORD = re.compile(
    r"\b(?:plans?|package|tier|subscription|membership|bundle|unlimited|premium|prepaid|"
    r"gigs?|gb|mbps)\b",
    re.IGNORECASE,
)
_NOT_PLAN = re.compile(r"\b(?:dental|insurance|medical|health|vision|payment plan)\b", re.I)
_CHANGE_VERB = {
    "upgrad": "upgrade",
    "downgrad": "downgrade",
}


def _plan_change(template: str) -> _BuildOne:
    """A plan the caller asks to move to: "switch me to the unlimited plan"."""

    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        raw = _trim(match["x"])
        verb = next((v for k, v in _CHANGE_VERB.items() if match["v"].lower().startswith(k)), None)
        if verb is None and re.search(r"\bup (?:to|on)\b", match[0], re.I):
            verb = "upgrade"  # "bump me up to...", "move her up to Senior Plus"
        if _PRONOUN_OBJECT.match(raw) or _VAGUE_OBJECT.fullmatch(raw) or _NOT_PLAN.search(raw):
            return None
        if verb is None and not _PLAN_WORD.search(raw):
            return None
        x = _phrase(raw)
        if x is None or _TIME.fullmatch(x):
            return None
        verb = verb or "switch"
        ving = verb[:-1] + "ing" if verb.endswith("e") else verb + "ing"
        content = template.format(v=verb, ving=ving, x=x)
        return _Found(_capitalise(content), PLAN, "plan", request="plan")

    return build


def _on_plan(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or _NOT_PLAN.search(x) or not _PLAN_WORD.search(x):
        return None
    return _Found(f"Is on {x}", LIFE, "plan")


# -- how the caller wants to be contacted

_CONTACT_TIME = re.compile(
    r"(?:before|after|between|until|past|during|in the (?:morning|afternoon|evening)s?|"
    r"on (?:weekdays|weekends|" + "|".join(d + "s?" for d in _WEEKDAYS) + r")|"
    r"any ?time (?:after|before)|at (?:night|work|dinner ?time|lunch))\b",
    re.IGNORECASE,
)


def _contact_when(negated: bool) -> _BuildOne:
    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        x = _phrase(match["x"])
        if x is None:
            return None
        how = _CONTACTED.get(match["v"].lower(), "contacted")
        lead = "Prefers not to be" if negated else "Prefers to be"
        key = "contact_time" if _TIME.search(x) or _PREFERRED_TIME.search(x) else None
        return _Found(f"{lead} {how} {x}", MANNER, key)

    return build


def _best_way(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    if match["what"].lower() == "time":
        return _Found(f"Best time to reach them is {x}", MANNER, "contact_time")
    if len(_DIGIT.findall(x)) >= 7:
        return _slot("phone", x)
    if not _CONTACT.search(x) and not re.search(r"\b(?:phone|cell|mobile)\b", x, re.I):
        return None
    return _Found(f"Prefers to be contacted by {x}", MANNER, "contact_method")


def _no_calls(match: re.Match[str], ctx: _Context) -> _Found:
    return _Found("Prefers not to be called", MANNER, "contact_method")


# -- people and pets

_PET_WORD = re.compile(rf"(?:{_PETS})", re.IGNORECASE)
_FEMALE = frozenset(
    _words(
        """
    wife mom mother mum daughter sister grandma grandmother granddaughter aunt niece
    girlfriend fiancee fiancée stepmom step-mom stepmother step-mother stepdaughter
    mother-in-law daughter-in-law sister-in-law godmother goddaughter landlady ex-wife
    great-granddaughter
    """
    )
)
_MALE = frozenset(
    _words(
        """
    husband dad father son brother grandpa grandfather grandson uncle nephew boyfriend
    fiance fiancé stepdad step-dad stepfather step-father stepson father-in-law son-in-law
    brother-in-law godfather godson landlord ex-husband great-grandson
    """
    )
)
# A capitalised word that is no name after "my wife": "my wife And I" never happens, but
# "my doctor Dr. Shah", "my son Monday" (ASR) do.
_NOT_A_NAME = frozenset(
    {"I", "And", "The", "But", "So", "Or", "Dr", "Mr", "Mrs", "Ms", "Doctor", "Okay", "OK"}
    | _PROPER_WORDS
)
_MENTION = re.compile(
    r"\b(?P<own>my|our|her|his) (?:(?:late|little|older|younger|oldest|youngest|eldest|baby|"
    rf"new|old|sweet|grown|adult|teenage|senior|rescue) )?(?P<rel>{_KIN}),? "
    r"(?P<n>(?:(?:Dr|Mr|Mrs|Ms)\.? )?(?-i:[A-Z])[a-z]+(?:-(?-i:[A-Z])[a-z]+)?)\b",
    re.IGNORECASE,
)
_NAMED = re.compile(
    rf"\b(?:a|an|one|my|our)(?: [\w-]+)? (?P<rel>{_KIN}) (?:named|called) "
    r"(?P<n>(?-i:[A-Z])[a-z]+(?:-(?-i:[A-Z])[a-z]+)?)\b",
    re.IGNORECASE,
)
_KEEP_UNDER = re.compile(
    r"\bkeep (?:it|the (?:cost|total|price)|things|costs) (?P<x>(?:under|below|within|around|"
    rf"to|at) (?:about |around |like )?{_NUMBER}(?: (?:dollars|bucks|euros|pounds|k|grand))?"
    r"(?: (?:for|a|per) [\w ]{1,20})?)",
    re.IGNORECASE,
)
_PET_NAMED = re.compile(
    rf"\b(?:a|an|one) (?:[\w-]+ ){{0,2}}?(?P<rel>{_PETS}), (?P<n>(?-i:[A-Z])[a-z]+)\b(?!')",
    re.IGNORECASE,
)
# "my wife" said without her name: she is whom a later "she" means.
_RELATIVE = re.compile(rf"\b(?:my|our) (?P<rel>{_KIN})\b(?!'s name)", re.IGNORECASE)
_BUDGET = re.compile(
    r"\bbudget(?P<f> for (?:the |a |our |my )?[\w ]{1,20}?)?,?(?:'s| is| of| will be| would be)?"
    r"(?P<q>(?: (?:around|about|roughly|maybe|"
    r"under|up to|at most|no more than|somewhere around|max|maximum|probably|approximately|"
    r"close to|between|like|of|is|tops))*) "
    rf"(?P<x>{_NUMBER}(?: (?:and|to|or) {_NUMBER})?(?: (?:dollars|bucks|euros|pounds|k|grand|"
    r"a (?:month|night|week|year|person)|per (?:month|night|week|year|person)|total|all in|"
    r"each|tops|max))*)",
    re.IGNORECASE,
)


def _gender(rel: str) -> str:
    rel = rel.lower()
    return "she" if rel in _FEMALE else "he" if rel in _MALE else "any"


def _meet(ctx: _Context, rel: str, name: str | None) -> None:
    """Remember who the caller just spoke of, for a later "she", "his" or "Max"."""
    label = _capitalise(rel.lower()) + (f" {name}" if name else "")
    ctx.last_person = (label, _gender(rel), ctx.turn, "" if name else rel.lower())
    if name:
        ctx.people[name] = label


# How many turns a "she" may reach back to the person the caller named.
_PRONOUN_REACH = 6


def _referent(pronoun: str, ctx: _Context) -> tuple[str, str, int, str] | None:
    """Whom "she"/"he" ("her"/"his") stands for: the person last spoken of, when recent
    and of that gender, else the one the caller is calling for."""
    pronoun = {"her": "she", "his": "he"}.get(pronoun.lower(), pronoun.lower())
    for person in (ctx.last_person, ctx.behalf):
        if person is None or person[1] not in ("any", pronoun):
            continue
        if person is ctx.behalf or ctx.turn - person[2] <= _PRONOUN_REACH:
            return person
    return None


def _owner(own: str, ctx: _Context) -> str:
    """Whose "her"/"his" is: the relative the caller last spoke of, if it fits."""
    person = _referent(own, ctx)
    return person[0] + "'s" if person else _capitalise(own.lower())


def _mentions(clause: str, ctx: _Context, said: Sequence[_Found]) -> list[_Found]:
    """People and pets named in passing ("my wife Linda and I...") and budgets ("budget
    around three thousand"), besides what the clause's rule made of it."""
    found: list[_Found] = []
    lowered = clause.lower()
    behalf = _BEHALF.search(clause) if "calling" in lowered else None
    if "keep it" in lowered or "keep the" in lowered:
        limit = _KEEP_UNDER.search(clause)
        if limit is not None:
            found.append(_Found(f"Budget is {_trim(limit['x'])}", PREFERENCE, "budget"))
    if "budget" in lowered:
        budget = _BUDGET.search(clause)
        if budget is not None:
            qualifier = " ".join(w for w in budget["q"].split() if w.lower() not in ("of", "is"))
            amount = _trim(f"{qualifier} {budget['x']}")
            purpose = _phrase(budget["f"]) if budget["f"] else None
            if purpose:
                found.append(_Found(f"Budget {purpose} is {amount}", PREFERENCE))
            else:
                found.append(_Found(f"Budget is {amount}", PREFERENCE, "budget"))
    possessive = any(w in lowered for w in ("my ", "our ", "her ", "his "))
    for match in _RELATIVE.finditer(clause) if possessive else ():
        rel = match["rel"].lower()
        known = ctx.last_person is not None and ctx.last_person[0].lower().startswith(rel)
        if not (rel.endswith("s") and rel != "boss") and not known:
            _meet(ctx, rel, None)
    for match in _MENTION.finditer(clause) if possessive else ():
        rel, name = match["rel"].lower(), match["n"]
        if name.split(".")[0] in _NOT_A_NAME and not name.startswith(("Dr", "Mr", "Ms")):
            continue
        if rel.endswith("s") and rel != "boss":
            continue  # "my kids Leo and Mia": said of each elsewhere, if at all
        if match["own"].lower() in ("my", "our"):
            _meet(ctx, rel, name)
            content = f"Has {_article(rel)} {rel} named {name}"
        else:
            content = f"{_owner(match['own'], ctx)} {rel} is named {name}"
        if not any(name in f.content for f in (*said, *found)):
            found.append(_Found(content, LIFE))
    for match in _PET_NAMED.finditer(clause) if ", " in clause else ():
        rel, name = match["rel"].lower(), match["n"]
        if name in _NOT_A_NAME or name in _NOT_A_SUBJECT:
            continue
        _meet(ctx, rel, name)
        if not any(name in f.content for f in (*said, *found)):
            found.append(_Found(f"Has {_article(rel)} {rel} named {name}", LIFE))
    named = "named" in lowered or "called" in lowered
    for match in _NAMED.finditer(clause) if named else ():
        rel, name = match["rel"].lower(), match["n"]
        _meet(ctx, rel, name)
        content = f"Has {_article(rel)} {rel} named {name}"
        if not any(name in f.content for f in (*said, *found)):
            found.append(_Found(content, LIFE))
    if behalf is not None and ctx.last_person is not None:
        ctx.behalf = ctx.last_person
    elif behalf is not None:
        _meet(ctx, behalf["rel"], None)
        ctx.behalf = ctx.last_person
    if ", my " in lowered or ", our " in lowered:
        found += _reverse_mentions(clause, ctx, [*said, *found])
    if _DIGIT.search(clause) or _HAS_NUMBER.search(clause):
        found += _street_mentions(clause, ctx, [*said, *found])
    return found


def _their_relative_says(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Her caregiver, Rosa, picks up her prescriptions" after "my mom has dementia".
    x = _phrase(_expand_contraction(match["x"]))
    if x is None:
        return None
    rel, name = match["rel"].lower(), match["n"]
    owner = _owner(match["own"], ctx)
    ctx.people[name] = f"{owner} {rel} {name}"
    return _Found(f"{owner} {rel} {name} {x}", LIFE)


def _pronoun_says(match: re.Match[str], ctx: _Context) -> _Found | None:
    """ "She has arthritis" about the relative or pet the caller just spoke of."""
    person = _referent(match["p"], ctx)
    if person is None:
        return None
    label = person[0]
    x = _phrase(_expand_contraction(match["x"].lstrip()))
    if x is None or " " not in x:
        return None
    return _Found(f"{label} {x}", LIFE)


def _pronoun_name(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "I have a grandson. His name is Eli."
    person = _referent(match["p"], ctx)
    name = _name(match["n"], strict=True)
    if person is None or not person[3] or name is None:
        return None
    rel = person[3]
    _meet(ctx, rel, name)
    return _Found(f"Has {_article(rel)} {rel} named {name}", LIFE)


def _named_says(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Max has diabetes" once "my dog Max" was said.
    label = ctx.people.get(match["n"])
    x = _phrase(_expand_contraction(match["x"]))
    if label is None or x is None or " " not in x:
        return None
    return _Found(f"{label} {x}", LIFE)


# -- delivery

_PLACE_WORD = re.compile(
    r"\b(?:place|house|home|office|work|apartment|apt|building|address|street|st|avenue|ave|"
    r"road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|condo|unit|suite|p\.?o\.? box|"
    r"po box)\b",
    re.IGNORECASE,
)
_NOT_AN_ADDRESS = re.compile(r"@|\b(?:e-?mail|inbox|phone|number|text|account)\b", re.I)


def _delivery(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or _NOT_AN_ADDRESS.search(x) or len(x.split()) > 16:
        return None
    if not (_HAS_NUMBER.search(x) or _PLACE_WORD.search(x)):
        return None
    return _Found(f"Delivery address: {x}", IDENTITY, "delivery_address")


# -- money

_SAVE_LEAD = {
    "trying": "Trying to save",
    "hoping": "Hoping to save",
    "planning": "Planning to save",
    "looking": "Looking to save",
    "aiming": "Aiming to save",
    "want": "Wants to save",
    "wanting": "Wants to save",
    "wanna": "Wants to save",
    "need": "Needs to save",
    "needing": "Needs to save",
    "going": "Going to save",
    "gonna": "Going to save",
    "working": "Working on saving",
}


def _save_goal(match: re.Match[str], ctx: _Context) -> _Found | None:
    raw = _trim(match["x"])
    if _VAGUE_PLAN.search(raw) and not _HAS_NUMBER.search(raw):
        return None
    x = _phrase(raw)
    if x is None:
        return None
    lead = _SAVE_LEAD[match["v"].lower()]
    verb = match["s"].lower()
    if verb not in ("save", "saving"):
        lead = lead.replace("save", verb).replace("saving", verb)
    return _Found(f"{lead} {x}", GOAL, "savings_goal")


_SAVINGS_CUE = re.compile(
    r"\b(?:saved|savings?|in the bank|put away|set aside|socked away|401 ?k|ira|retirement|"
    r"emergency fund|checking|rainy day)\b",
    re.IGNORECASE,
)


def _has_saved(match: re.Match[str], ctx: _Context) -> _Found | None:
    verb = match["v"].lower()
    x = _phrase(match["x"])
    if x is None or not _HAS_NUMBER.search(x):
        return None
    if verb in ("have", "got", "'ve got") and not _SAVINGS_CUE.search(x):
        return None
    lead = "Has" if verb in ("have", "got", "'ve got") else f"Has {verb}"
    return _Found(f"{lead} {x}", LIFE, "savings")


_MONEY_KEYS = {
    "mortgage payment": "mortgage",
    "monthly payment": "monthly_payment",
    "car payment": "car_payment",
    "credit limit": "credit_limit",
    "credit score": "credit_score",
    "down payment": "down_payment",
    "co-pay": "copay",
    "take-home": "income",
    "take home": "income",
    "paycheck": "income",
    "salary": "income",
    "price range": "budget",
}


def _money_is(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"].split(", ")[0])
    what = match["w"].lower()
    if x is None or not _HAS_NUMBER.search(x) or x.lower().startswith("to "):
        return None
    head = re.sub(r"^(?:monthly|annual|yearly|total|current|new|old) ", "", what)
    key = _MONEY_KEYS.get(head, _NON_WORD.sub("_", head).strip("_"))
    return _Found(f"{_capitalise(what)} is {x}", LIFE, key)


_EARNS = {"make": "Makes", "earn": "Earns", "bring home": "Brings home", "take home": "Takes home"}


def _money_verb(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    verb = match["v"].lower()
    lead = _EARNS.get(verb) or _third_singular(verb).capitalize()
    return _Found(f"{lead} {x}", LIFE, "income" if verb in _EARNS else None)


# -- travel

_TRIP_CUE = re.compile(
    r"\b(?:trip|vacation|holiday|travel\w*|fly|flying|flights?|visit\w*|honeymoon|cruise|"
    r"getaway|anniversary|tour|resort|hotel|beach|abroad|overseas|tickets?)\b",
    re.IGNORECASE,
)
_TRIP_WHEN = re.compile(
    r"^(?:(?:,? ?)(?:in|for|on|over|around|next|this|at the end of|the|early|late|mid|during|"
    r"from|until|through|before|after)\b[^,;]*)",
    re.IGNORECASE,
)
_STRONG_TRIP = re.compile(
    r"^(?:flying|travell?ing|heading|headed|off|planning a trip|planning to (?:go|visit|travel)|"
    r"hoping to|visiting|driving|leaving for|taking)",
    re.IGNORECASE,
)


def _trip(match: re.Match[str], ctx: _Context) -> _Found | None:
    place = match["x"].rstrip(",.")
    first = place.split()[0].rstrip(".")
    if first in _NOT_A_NAME or first.lower() in _WEEKDAYS or first.lower() in _MONTHS:
        return None
    when_match = _TRIP_WHEN.match(match["r"])
    when = _trim(when_match[0]) if when_match else ""
    strong = bool(_STRONG_TRIP.match(match["v"]))
    if not (strong or (when and _TIME.search(when)) or _TRIP_CUE.search(ctx.turns[ctx.turn])):
        return None
    when_text = f" {_third_person(when)}" if when else ""
    return _Found(f"Planning a trip to {place}{when_text}", PLAN, "trip")


def _travel_need(template: str) -> _BuildOne:
    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        x = _phrase(match["x"])
        if x is None:
            return None
        return _Found(template.format(x=x), PLAN)

    return build


def _travel_when(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or not _TIME.search(x):
        return None
    verb, _, particle = match["v"].partition(" ")
    said = _third_singular(verb) + (f" {particle}" if particle else "")
    x = _AND_VERB.sub(lambda m: f"{m[1]} {_third_singular(m[2])}", x)
    return _Found(_capitalise(f"{said} {x}"), PLAN)


# -- seats and diet

_FOOD = (
    r"shellfish|seafood|fish|nuts|peanuts|tree nuts|dairy|milk|cheese|gluten|wheat|pork|beef|"
    r"red meat|meat|chicken|eggs?|soy|sesame|mushrooms|onions|garlic|cilantro|spicy food|"
    r"anything spicy|spicy stuff|alcohol|sugar|caffeine|coffee|shrimp|lobster|crab|oysters?|"
    r"carbs|bread|sweets|sodium|salt|mayo|mayonnaise|lamb|bacon|animal products|meat products"
)
_SEAT_NEGATION = re.compile(
    r"\b(?:not|no|never|don't|do not|hate|can't stand|cannot stand|avoid|anything but|"
    r"rather not|instead of)\b",
    re.IGNORECASE,
)


_SEAT_ALONE = frozenset({"aisle", "exit row", "bulkhead"})
_SEAT_ASK = re.compile(
    r"^(?:(?:I(?:'d| would)? {ADV}(?:like|prefer|want|need|take|rather have|always (?:get|take|"
    r"book|choose))|(?:give|get|put) me(?: in| on)?|get|have|I want to get|"
    r"(?:I|we)(?:'d| would) rather(?: have)?|(?:not|no|never) (?:the )?) ?)?$".replace(
        "{ADV}", ADV
    ),
    re.IGNORECASE,
)


def _seat(match: re.Match[str], ctx: _Context) -> _Found | None:
    seat = match["x"].lower().replace("-", " ")
    has_seat = bool(match["s"]) or bool(re.search(r"\b(?:seat|sit|sitting)\b", match["lead"], re.I))
    if not has_seat and (seat not in _SEAT_ALONE or not _SEAT_ASK.match(match["lead"])):
        return None  # "my window is stuck", "walking down the aisle"
    what = f"{_article(seat)} {seat} seat"
    if _SEAT_NEGATION.search(match["lead"]):
        return _Found(f"Does not want {what}", PREFERENCE)
    return _Found(f"Prefers {what}", PREFERENCE, "seat")


def _diet(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    if re.match(r"(?:lactose|celiac)", x, re.I):
        return _Found(f"Is {x}", HEALTH)
    return _Found(f"Is {x}", PREFERENCE, "diet")


_AVOIDS = "Avoids {x}"


def _does_not_eat(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    verb = "drink" if match["v"].lower() == "drink" else "eat"
    template = f"Does not {verb} " + "{x}"
    return _Found(template.format(x=x), PREFERENCE, continues=template)


def _meal(match: re.Match[str], ctx: _Context) -> _Found | None:
    kind = match["x"].lower()
    return _Found(f"Wants {_article(kind)} {kind} meal", PREFERENCE, "meal")


# -- fraud

_FRAUD_CUE = re.compile(
    r"\b(?:didn't|did not|never|don't|do not|not mine|wasn't me|wasn't them|fraud\w*|"
    r"unauthori[sz]ed|suspicious|weird|strange|unknown|unfamiliar|random|odd|duplicate|"
    r"double|recogni[sz]e)\b",
    re.IGNORECASE,
)
_FRAUD_OBJECT = re.compile(
    r"\b(?:card|account|identity|money|bank|password|charges?|purchases?|credit|debit|wallet|"
    r"checks?|funds|savings|login|pin|social security)\b",
    re.IGNORECASE,
)
_TRANSACTION = r"(?:charges?|transactions?|purchases?|withdrawals?|payments?|debits?|transfers?)"


def _fraud(template: str, cue: re.Pattern[str]) -> _BuildOne:
    def build(match: re.Match[str], ctx: _Context) -> _Found | None:
        x = _phrase(match["x"])
        if x is None or not cue.search(x):
            return None
        return _Found(template.format(x=x), FRAUD)

    return build


_ANYTHING = re.compile(r".")


# -- questions the agent asks about someone else, or about an amount

_PERSON_NAME_Q = re.compile(
    rf"\b(?:(?:your|the) (?P<rel>{_KIN})'s (?:full |first |last )?name|(?:his|her|their) (?:full |"
    r"first |last )?name|what(?:'s| is| are you calling| did you name) (?:him|her)\b)",
    re.IGNORECASE,
)
_PERSON_ROLE_Q = re.compile(
    rf"\b(?:should|would|will|can|could|is|does) your (?P<rel>{_KIN}) (?:be|want|need|like|have)\b",
    re.IGNORECASE,
)
_PERSON_QUESTION = re.compile(
    f"{_PERSON_NAME_Q.pattern}|{_PERSON_ROLE_Q.pattern}".replace("?P<rel>", "?:"), re.IGNORECASE
)
_AMOUNT_QUESTION = re.compile(
    r"\bhow much\b|\bwhat(?:'s| is) (?:the|your) (?:budget|price|amount|goal|target)\b|"
    r"\bwhat (?:kind of |sort of )?budget\b|\bwhat did (?:you|they) pay\b|\bpurchase price\b",
    re.IGNORECASE,
)
_BEHALF = re.compile(
    rf"\bcalling (?:for|about|on behalf of) (?:my|our) (?:[\w-]+ )?(?P<rel>{_KIN})\b", re.I
)

# -- street addresses said anywhere ("It's eleven eighty Birchwood Lane now")

_STREET_SUFFIX = (
    r"(?:street|st|avenue|ave|road|rd|lane|ln|drive|dr|court|ct|way|boulevard|blvd|place|pl|"
    r"terrace|circle|cir|parkway|pkwy|highway|hwy|trail|square|loop|row|crescent)"
)
_HOUSE_NUMBER = rf"(?:\d+[a-z]?|{_NUM_WORD}(?:[ -](?:{_NUM_WORD}|oh))*)"
_STREET_ADDRESS = re.compile(
    rf"\b(?P<a>{_HOUSE_NUMBER} (?:(?-i:[A-Z])[\w'-]*\.? ){{1,3}}{_STREET_SUFFIX}\b\.?"
    r"(?:,? (?:apartment|apt\.?|unit|suite|number|#) ?(?:\d+\w*|[A-Za-z]\b|"
    rf"{_NUM_WORD}(?: [A-Za-z]\b)?))?(?:,? in (?-i:[A-Z])[\w'-]+(?: (?-i:[A-Z])[\w'-]+)?)?)",
    re.IGNORECASE,
)
_DELIVERY_CONTEXT = re.compile(r"\b(?:deliver\w*|ship\w*|package|parcel|send it)\b", re.I)
_REVERSE_MENTION = re.compile(
    r"(?<![\w,] )(?P<n>(?:(?:Dr|Mr|Mrs|Ms)\.? )?(?-i:[A-Z])[a-z]+(?: (?-i:[A-Z])[a-z]+)?), "
    rf"(?:my|our) (?P<rel>{_KIN})(?=,|$)",
    re.IGNORECASE,
)
_NOT_A_SUBJECT = frozenset(
    _words("She He It That This There They We You Everyone Everything Nobody Someone Who What")
)
_GREETING_WORDS = frozenset(_words("hi hey hello thanks bye okay oh yes no well so dear"))


def _street_mentions(clause: str, ctx: _Context, said: Sequence[_Found]) -> list[_Found]:
    found: list[_Found] = []
    for match in _STREET_ADDRESS.finditer(clause):
        address = _trim(match["a"])
        words = [w for w in address.split() if w[:1].isupper() and not _HAS_NUMBER.match(w)]
        if any(all(w in f.content for w in words) for f in said):
            continue
        if _DELIVERY_CONTEXT.search(ctx.turns[ctx.turn]):
            found.append(_Found(f"Delivery address: {address}", IDENTITY, "delivery_address"))
        else:
            found.append(_Found(f"Address: {address}", IDENTITY, "address"))
    return found


def _reverse_mentions(clause: str, ctx: _Context, said: Sequence[_Found]) -> list[_Found]:
    # "Dr. Okafor, our vet, was very calm"; "Rosa, my instructor, says..."
    found: list[_Found] = []
    for match in _REVERSE_MENTION.finditer(clause):
        name, rel = match["n"], match["rel"].lower()
        before = clause[: match.start()].split()
        if (
            name.split()[0] in _NOT_A_NAME
            or name.split()[0] in _NOT_A_SUBJECT
            or (before and before[-1].strip(",").lower() in _GREETING_WORDS)
            or (rel.endswith("s") and rel != "boss")
            or any(name in f.content for f in said)
        ):
            continue
        _meet(ctx, rel, name)
        found.append(_Found(f"Has {_article(rel)} {rel} named {name}", LIFE))
    return found


_LAST_NAME_BEFORE = re.compile(
    r"(?-i:[A-Z][a-z]+(?: [A-Z][a-z]+)+)|(?<=[a-z,] )(?-i:[A-Z][a-z]+)", re.IGNORECASE
)


def _pronoun_is_relative(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Lily Mendes, she's my granddaughter": the name said just before.
    text = ctx.turns[ctx.turn]
    clause_at = text.find(match[0][:20])
    names = [
        m[0]
        for m in _LAST_NAME_BEFORE.finditer(text, 0, max(clause_at, 0))
        if m[0].split()[0] not in _NOT_A_NAME and m[0].split()[0] not in _NOT_A_SUBJECT
    ]
    if clause_at <= 0 or not names:
        return None
    rel, name = match["rel"].lower(), names[-1]
    _meet(ctx, rel, name.split()[0])
    return _Found(f"Has {_article(rel)} {rel} named {name}", LIFE)


def _name_is_relative(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Karen is my daughter"
    name, rel = match["n"], match["rel"].lower()
    if name.split()[0] in _NOT_A_NAME or name.split()[0] in _NOT_A_SUBJECT:
        return None
    _meet(ctx, rel, name.split()[0])
    return _Found(f"Has {_article(rel)} {rel} named {name}", LIFE)


def _their_relative_is(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Her teacher is Mr. Alvarez"
    name = match["n"]
    if name.split()[0].rstrip(".") in _NOT_A_SUBJECT:
        return None
    return _Found(f"{_owner(match['own'], ctx)} {match['rel'].lower()} is {name}", LIFE)


def _named_diet(match: re.Match[str], ctx: _Context) -> _Found | None:
    # "Monique's gluten free", "Claire is allergic to shellfish"
    name = match["n"]
    x = _phrase(match["x"])
    if x is None or name in _NOT_A_NAME or name in _NOT_A_SUBJECT:
        return None
    health = re.match(r"(?:allergic|lactose|celiac|diabetic)", x, re.I)
    return _Found(f"{name} is {x}", HEALTH if health else PREFERENCE)


def _reported(match: re.Match[str], ctx: _Context) -> list[_Found] | None:
    return _match(match["x"], ctx) or None


def _adopted(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    _meet(ctx, match["rel"], None)
    return _Found(f"{match['v'].capitalize()} {x}", LIFE)


# -- contact, as said on the phone

_CONTACT_PLURAL = {
    "text": "texts",
    "texting": "texts",
    "message": "texts",
    "messaging": "texts",
    "email": "emails",
    "e-mail": "emails",
    "emailing": "emails",
    "call": "calls",
    "calling": "calls",
    "phone": "calls",
}
_CONTACT_BY = {"text": "text", "message": "text", "email": "email", "e-mail": "email"}


def _contact_pref(match: re.Match[str], ctx: _Context) -> _Found:
    how = match["v"].lower()
    noun = _CONTACT_PLURAL.get(how) or _CONTACT_PLURAL.get(how.rstrip("s"), how)
    only = " only" if "only" in match[0].lower() else ""
    return _Found(f"Prefers {noun}{only}", MANNER, "contact_method")


def _contact_when_ready(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    how = _CONTACTED.get(match["v"].lower(), "contacted")
    return _Found(f"Wants to be {how} when {x}", MANNER)


def _contact_line(match: re.Match[str], ctx: _Context) -> _Found | None:
    line = _phrase(match["x"])
    if line is None:
        return None
    how = _CONTACTED.get(match["v"].lower(), "contacted")
    content = f"Prefers to be {how} on their {line}"
    other = _phrase(match["y"].split(",")[0]) if match["y"] else None
    if other:
        content += f", not {other}"
    return _Found(content, MANNER, "contact_method")


def _documents_by(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None:
        return None
    how = {"e-mail": "email", "mail": "mail"}.get(match["v"].lower(), match["v"].lower())
    content = f"Wants {x} by {how}"
    other = _phrase(match["y"].split(",")[0]) if match["y"] else None
    if other:
        content += f", not {other}"
    return _Found(content, MANNER)


def _no_paper(match: re.Match[str], ctx: _Context) -> _Found:
    what = match["x"].lower()
    if re.search(r"\be-?mail", ctx.turns[ctx.turn], re.I):
        return _Found(f"Wants {what} by email, not paper", MANNER)
    return _Found(f"Does not want paper {what}", MANNER)


# -- values that change: "bump the transfer up to seven fifty a month"

_VALUE_ADJECTIVES = re.compile(
    r"^(?:(?:automatic|auto|monthly|weekly|yearly|annual|recurring|current|new|old|total|"
    r"their|the|your|my|our) )+",
    re.IGNORECASE,
)


def _value_key(what: str) -> str:
    return _NON_WORD.sub("_", _VALUE_ADJECTIVES.sub("", what.lower())).strip("_")


def _value_change(match: re.Match[str], ctx: _Context) -> _Found | None:
    what = _trim(match["w"])
    x = _phrase(match["x"])
    if x is None or not (_HAS_NUMBER.search(x) or _TIME.search(x)) or _PRONOUN_OBJECT.match(what):
        return None
    if what.lower() in ("up", "down", "back", "over", "it", "that", "them"):
        return None
    owner = match["o"].lower()
    their = "their " if owner in ("my", "our") else f"{owner} " if owner in ("his", "her") else ""
    if _APPOINTMENT_WORD.search(what):
        return _Found(f"Wants {their}{what} moved to {x}", PLAN, request="move")
    return _Found(f"Wants {their}{what} changed to {x}", PLAN, _value_key(what))


def _travel_request(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or not _TIME.search(x):
        return None
    return _Found(f"Wants to {match['v'].lower()} {x}", PLAN)


# -- identifiers and codes

_CODE_NOUN = re.compile(
    r"\b(?:lockbox|lock box|gate|door|garage|alarm|building|entry|buzzer)\b", re.I
)


def _code(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or not _HAS_NUMBER.search(x):
        return None
    what = (match["w"] or "").lower().strip()
    if not what:
        # "The code's two five eight zero" after "I'm putting in a lockbox"
        nouns = _CODE_NOUN.findall(ctx.turns[ctx.turn])
        what = nouns[-1].lower() if nouns else ""
    label = f"{what} code".strip()
    return _Found(f"{_capitalise(label)} is {x}", LIFE, _value_key(label))


# -- events with a date: "The conference is May fourth to the sixth"

_EVENT_NOUN = (
    r"conference|wedding|graduation|surgery|procedure|operation|move[- ]in|move[- ]out|move|"
    r"closing|"
    r"trip|flight|party|birthday|anniversary|interview|meeting|reunion|funeral|vacation|"
    r"delivery|installation|install|due date|class|lesson|recital|game|tournament|race|"
    r"marathon|shower|ceremony|recheck|shift|start date|first day|lease|closing date|"
    r"appointment|cleaning|check-?up|visit|follow-?up|exam|lunch|dinner|reservation|booking"
)


def _event_date(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    what = _phrase(match["w"])
    if x is None or what is None or not _TIME.search(x) or not (match["v"] or match["m"]):
        return None
    verb = "moved" if match["m"] else "is"
    prep = (match["p"] or (" to" if match["m"] else "")).lower()
    return _Found(f"{_capitalise(what)} {verb}{prep} {x}", EVENT)


# -- the caller taking an offered slot: "the eighteenth at one fifteen works"

_ORDINAL_WORD = (
    r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    r"thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|"
    r"thirtieth|twenty[- ](?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|"
    r"thirty[- ]first"
)
_CLOCK_WORD = r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
_DAY_PART = rf"(?:\d{{1,2}}(?:st|nd|rd|th)?|{_ORDINAL_WORD})"
_MONTH_RE = "|".join(_MONTHS)
_WEEKDAY_RE = "|".join(_WEEKDAYS)
_CLOCK = (
    rf"(?:\d{{1,2}}(?::\d{{2}})?(?: ?[ap]m)?|noon|midnight|(?:{_CLOCK_WORD})(?: (?:o'clock|"
    r"oh \w+|fifteen|thirty|forty[- ]five|twenty|forty|fifty|ten|five|forty|"
    r"twenty[- ]five|thirty[- ]five))?(?: ?[ap]m)?)"
)
_WHEN = (
    rf"(?:(?:(?:this|next) )?(?:{_WEEKDAY_RE})(?:,? (?:the )?{_DAY_PART}(?: of (?:{_MONTH_RE}))?|"
    rf",? (?:{_MONTH_RE}) {_DAY_PART})?|(?:the )?{_DAY_PART}(?: of (?:{_MONTH_RE}))?|"
    rf"(?:{_MONTH_RE}) {_DAY_PART}|tomorrow|today)"
    rf"(?:,? (?:at |from |between |around )?{_CLOCK}(?: (?:to|and|until|-) {_CLOCK})?)?"
    r"(?:,? (?:in the )?(?:morning|afternoon|evening))?"
)
_CLOCK_FIRST = (
    rf"{_CLOCK}(?: (?:to|and|until|-) {_CLOCK})?(?: (?:in the )?(?:morning|afternoon|evening))?"
    rf",? (?:on )?{_WHEN}"
)
_READBACK = re.compile(
    rf"^(?:(?:so )?that's |you're all set for )?(?P<when>{_WHEN}|"
    rf"{_CLOCK_FIRST})(?P<rest>(?:,? (?:with|for) [^,]{{1,40}})?(?:, [^,]{{1,30}})?)$",
    re.IGNORECASE,
)
_SLOT_TAKEN = re.compile(
    rf"^(?:let's do |let's go with |I'll take |I'll do |we'll take |(?:yeah,? )?)(?P<when>{_WHEN}|"
    rf"{_CLOCK_FIRST}|{_CLOCK}(?: (?:to|and|until|-) {_CLOCK})?)(?:,? (?:that |it )?(?:works|"
    r"would work|is fine|is good|is perfect|sounds good|sounds great|works for me|works great|"
    r"is great|please|yeah|yes|great|perfect|thanks))?$",
    re.IGNORECASE,
)
_HAS_DAY = re.compile(
    rf"\b(?:{_WEEKDAY_RE}|{_MONTH_RE}|{_ORDINAL_WORD}|\d{{1,2}}(?:st|nd|rd|th)|tomorrow|today)\b",
    re.I,
)


# What a slot outside a dentist's is for: "a table", "a technician visit"...
_VISIT = re.compile(
    r"\b(?:(?P<r>reservation|table for|private room|party of)|(?P<t>technician|tech|installer|"
    r"plumber|electrician|service call|repair)|(?P<l>lesson|class|demo|consultation|tour|"
    r"recheck|boarding|grooming|delivery|pickup|pick-up))\b",
    re.IGNORECASE,
)


def _visit_kind(ctx: _Context) -> tuple[str, int] | None:
    """The kind of visit last spoken of, and the turn, outside a dentist's."""
    for index in range(ctx.turn, -1, -1):
        matches = list(_VISIT.finditer(ctx.turns[index]))
        if matches:
            match = matches[-1]
            if match["r"]:
                return "reservation", index
            if match["t"]:
                return "technician visit", index
            return match["l"].lower(), index
    return None


def _booking(when: str, rest: str, ctx: _Context) -> _Found | None:
    if not _HAS_DAY.search(when):
        return None
    what_match = re.match(r",? for (?P<w>(?:a|an) [\w' -]+?)(?=,| with|$)", rest, re.I)
    kind, extra = _context_appointment(ctx)
    visit = _visit_kind(ctx)
    if visit is not None and (kind is None or visit[1] > (extra[0] if extra else ctx.turn)):
        kind, extra = visit[0], ()
    if what_match and _APPOINTMENT_WORD.search(what_match["w"]):
        what = what_match["w"]
        rest = rest[: what_match.start()] + rest[what_match.end() :]
    else:
        what = f"{_article(kind)} {kind}" if kind else "an appointment"
    rest = _trim(rest)
    tail = f", {rest}" if rest and not rest.lower().startswith("with") else f" {rest}"
    when = _booked_for(_about_caller(_lower_first(when)))
    if not when.lower().startswith(("for ", "on ", "at ")):
        when = "for " + when
    content = f"Has {what} booked {when}{tail.rstrip()}"
    return _Found(content.rstrip(", "), EVENT, confirms="book", extra_turns=extra)


def _agent_readback(clause: str, ctx: _Context) -> _Found | None:
    """ "Okay, Friday the thirtieth at eight thirty in the morning.": a slot read back."""
    match = _READBACK.match(clause)
    return _booking(match["when"], match["rest"], ctx) if match else None


_OFFER = re.compile(
    r"\?|\b(?:I have|we have|I've got|I can do|available|open(?:ing|ings)?|how about|would|"
    r"works?)\b",
    re.IGNORECASE,
)


_DAY_PHRASE = re.compile(
    rf"\b(?:(?:this |next )?(?:{_WEEKDAY_RE})(?:,? (?:the )?{_DAY_PART})?|"
    rf"(?:{_MONTH_RE}) {_DAY_PART}|the {_DAY_PART})\b",
    re.IGNORECASE,
)


def _slot_taken(match: re.Match[str], ctx: _Context) -> _Found | None:
    # Only after the agent offered times: "I have Wednesday the eighteenth at one fifteen."
    previous = next(
        (ctx.turns[i] for i in range(ctx.turn - 1, -1, -1) if ctx.roles[i] == "agent"), ""
    )
    if not (_HAS_DAY.search(previous) or _TIME.search(previous)) or not _OFFER.search(previous):
        return None
    when = match["when"]
    if not _HAS_DAY.search(when):
        # "Ten to noon, great." after "Tuesday the twenty fourth, I have ten to noon."
        day = _DAY_PHRASE.search(previous)
        when = f"{day[0]}, {_lower_first(when)}" if day else when
    found = _booking(when, "", ctx)
    return replace(found, confirms=None, request="any") if found else None


# -- the agent confirming a changed value or giving a reference number

_VALUE_UPDATED = re.compile(
    r"(?:\b(?:I|we)(?:'ve| have)? (?:just |now |also |gone ahead and )?(?:updated|changed|set|"
    r"moved|bumped|raised|lowered|increased|reduced|extended) (?:the |your )(?P<w>(?:[\w-]+ ){0,2}?"
    r"[\w-]+) (?:up |down )?(?:to|through|until) (?P<x>.+)"
    r"|\byour (?P<w2>(?:[\w-]+ ){0,2}?[\w-]+) is now (?P<x2>.+)"
    r"|^(?P<w3>[A-Za-z][\w-]*(?: [\w-]+){0,2}) (?:updated|changed|extended|moved|increased|"
    r"lowered|raised) (?:to|through|until) (?P<x3>.+))$",
    re.IGNORECASE,
)
_REFERENCE = re.compile(
    r"(?:\byour (?P<w>(?:[\w-]+ )?(?:claim|confirmation|reference|ticket|case|order|policy|"
    r"tracking|member|booking|report|account)) (?:number |# |id |code )?(?:is|'s) (?P<x>.+)"
    r"|\b(?:I|we)(?:'ve| have) (?:filed|opened|created|submitted|started) (?:a|an|the) "
    r"(?P<w2>[\w ]{1,25}?),? (?:number|#|reference(?: number)?|case number|claim number) "
    r"(?P<x2>.+))$",
    re.IGNORECASE,
)


_VALUE_HINTS = re.compile(
    r"updated|changed|set |moved|bumped|raised|lowered|increased|reduced|extended| is now|"
    r"number|filed|opened|created|submitted"
)


def _agent_value(clause: str, lowered: str) -> _Found | None:
    match = _REFERENCE.search(clause) if "number" in lowered or " is " in lowered else None
    if match and not _NEGATED.search(clause[: match.start()]):
        what = _trim(match["w"] or match["w2"])
        x = _trim(match["x"] or match["x2"])
        if _HAS_NUMBER.search(x) and not _PRONOUN_OBJECT.match(what):
            return _Found(f"{_capitalise(what)} number is {x}", LIFE, _value_key(what) + "_number")
    match = _VALUE_UPDATED.search(clause)
    if match is None or _NEGATED.search(clause[: match.start()]):
        return None
    what = _trim(match["w"] or match["w2"] or match["w3"])
    x = _about_caller(_trim(match["x"] or match["x2"] or match["x3"]))
    if not (_HAS_NUMBER.search(x) or _TIME.search(x)) or _PRONOUN_OBJECT.match(what):
        return None
    if what.lower() in ("it", "that", "you", "this") or _APPOINTMENT_WORD.search(what):
        return None
    return _Found(f"{_capitalise(what)} changed to {x}", EVENT, _value_key(what))


# -- medication named by "it"

_DOSE_NOW = re.compile(
    rf"^(?:now |so )?(?:it's|it is)(?: now)? (?P<x>{_NUMBER} ?(?:units?|mg|milligrams?|mcg|ml|"
    r"pills?|tablets?)\b.*)",
    re.IGNORECASE,
)


def _dose_now(match: re.Match[str], ctx: _Context) -> _Found | None:
    x = _phrase(match["x"])
    if x is None or ctx.last_drug is None:
        return None
    drug = ctx.last_drug
    return _Found(f"{_capitalise(drug)} dose is now {x}", HEALTH, _medication_key(drug))


_MEDICATION_RULES: tuple[_Rule, ...] = (
    # -- medication: doses, starts, stops, switches
    _rule(
        rf"^{_WHO}(?:(?:has|have|'ve|had|just|finally|recently|went and) )*(?P<v>{_MED_VERBS}) "
        r"(?:(?:my|the|his|her) (?:(?:dose|dosage) (?:of|on) )?(?:my )?(?P<d>[a-z][\w-]*)"
        r"(?: (?:dose|dosage|prescription|meds?))?|(?:it|that|them))(?: (?:up|down|back))?"
        r"(?: from (?P<f>.+?))? (?:to|up to|down to) (?P<x>.+)",
        _dose_change,
        needs=(
            "upped|raised|increased|bumped|doubled|tripled|lowered|reduced|cut|decreased|"
            "dropped|halved|changed|adjusted"
        ),
    ),
    _rule(
        rf"^{_WHO}(?:(?:has|have|'ve|had|just|finally|recently) )*(?P<v>{_MED_VERBS}) me "
        r"(?:up |down )?(?:from .+? )?to (?P<x>.+)",
        _dose_to,
        needs=(
            "upped|raised|increased|bumped|doubled|tripled|lowered|reduced|cut|decreased|"
            "dropped|halved|changed|adjusted"
        ),
    ),
    _rule(
        r"^my (?:(?:dose|dosage) of )?(?P<d>[a-z][\w-]*)(?: (?:dose|dosage|prescription))? "
        r"(?:was|got|has been|'s been|is being|went|is going|just got|just went|is now) "
        rf"(?:(?P<v>{_MED_VERBS}|up|down) )?(?:from (?P<f>.+?) )?(?:to|up to|down to) (?P<x>.+)",
        _dose_change,
    ),
    _rule(_DOSE_NOW.pattern, _dose_now),
    _rule(
        rf"^{_WHO}(?:(?:has|have|'ve|had|just|finally) )*switched me from (?:my )?(?P<f>.+?) "
        r"(?:to|over to) (?P<x>.+)",
        _switched_from,
        needs="switched",
    ),
    _rule(
        rf"^(?:I|we)(?:'ve| have)? {ADV}switched from (?:my )?(?P<f>.+?) (?:to|over to) (?P<x>.+)",
        _switched_from,
        needs="switched",
    ),
    _rule(
        rf"^(?:I {ADV}(?:stopped|quit|came off|went off|got off)(?: taking)?|"
        rf"{I_AM} {ADV}(?:off|no longer (?:on|taking)|not (?:on|taking)(?: the)? anymore)|"
        rf"{_WHO}(?:took|taken|taking) me off(?: of)?) (?P<x>.+)",
        _medication_event("Stopped taking {x}"),
        needs="stopped|quit|off|no longer|not on|not taking",
    ),
    _rule(
        rf"^(?:{_WHO}(?:(?:has|have|'ve|had|just) )*(?:started|put|placed) me (?:on|onto)|"
        rf"{I_AM} {ADV}(?:now )?(?:starting|started)(?: on| taking)?|"
        rf"(?:I|we) {ADV}(?:just )?started(?: taking| on)?) (?P<x>.+)",
        _medication_event("Started on {x}"),
        needs="start|put me|placed me",
    ),
    _rule(
        rf"^(?:(?:I|we) {ADV}(?:take|use)|(?:I|we)(?:'ve| have) {ADV}been (?:taking|on)|"
        rf"(?:{I_AM}|we(?:'re| are)) {ADV}(?:taking|on)) (?P<x>.+)",
        _takes,
        needs="take|use|on ",
    ),
)

# What the caller asks for, also when asked as a question (see _REQUEST_QUESTION).
_REQUEST_RULES: tuple[_Rule, ...] = (
    # -- plans and subscriptions
    _rule(
        r"^(?:please )?(?:just )?(?:go ahead and )?(?P<v>switch|move|put|change|upgrade|downgrade|"
        r"bump|transfer|sign)(?: me| us| her| him)? (?:up )?(?:over |back )?"
        r"(?:to|on|onto|into|for) (?P<x>.+)",
        _plan_change("Wants to {v} to {x}"),
        needs="switch|move|put|change|upgrade|downgrade|bump|transfer|sign",
    ),
    _rule(
        rf"^(?:I(?:'d| would) {ADV}(?:like|love|want) to|I {ADV}(?:want to|wanna|need to)|"
        rf"{I_AM} {ADV}(?:looking|hoping|trying|going|planning|ready) to|I {ADV}gotta) "
        r"(?P<v>switch|move|change|upgrade|downgrade|go|get|sign up) (?:my (?:plan|account|"
        r"service|subscription|package|line|phone) )?(?:over |back )?(?:to|on|onto|for) (?P<x>.+)",
        _plan_change("Wants to {v} to {x}"),
    ),
    _rule(
        rf"^(?:{I_AM}|we(?:'re| are)) {ADV}(?:thinking (?:about|of)|considering) "
        r"(?P<v>switching|moving|changing|upgrading|downgrading|going) (?:my (?:plan|account|"
        r"service|subscription|package) )?(?:over |back )?(?:to|on|onto) (?P<x>.+)",
        _plan_change("Considering {ving} to {x}"),
        needs="switching|moving|changing|upgrading|downgrading|going",
    ),
    _rule(
        r"^(?:please )?(?P<v>change|switch|upgrade|downgrade) (?:my|the|our) (?:plan|package|"
        r"subscription|service|account) (?:over )?to (?P<x>.+)",
        _plan_change("Wants to {v} to {x}"),
        needs="plan|package|subscription|service|account",
    ),
    # -- contact preferences said as commands
    _rule(
        r"^(?:(?:if|when|for) [^,]{1,40}, )?(?:please )?(?:(?:just|only|always) )?"
        r"(?P<v>text|email|e-mail|message) me,? "
        r"(?:(?:and |but |please )?(?:don't|do not|never|not)(?: to)? (?:call|phone|ring)(?: me)?"
        r"|no (?:phone )?calls|instead of (?:calling|phoning|a (?:phone )?call)(?: me)?"
        r"|over (?:calling|a call|phone calls)|rather than (?:call|calling|phone|phoning)(?: me)?"
        r"|instead)\b.*$",
        _text_me,
        needs="text|email|e-mail|message",
    ),
    _rule(
        r"^(?:please )?(?:don't|do not|never|no need to) (?:call|phone|ring) me(?: (?:anymore|"
        r"at all|on (?:my|the) \w+(?: phone)?))?,? (?:(?:please|just|only|and|but|instead) )*"
        r"(?P<v>text|email|e-mail|message) me\b.*",
        _text_me,
        needs="call|phone|ring",
    ),
    _rule(
        r"^(?:please )?(?:don't|do not|never) (?P<v>call|text|email|e-mail|phone) me "
        rf"(?P<x>{_CONTACT_TIME.pattern}.*)",
        _contact_when(negated=True),
        needs="don't|do not|never",
    ),
    _rule(
        r"^(?:please )?(?:don't|do not|never) (?:call|phone|ring) me(?: (?:anymore|at all|"
        r"again))?$",
        _no_calls,
        needs="call|phone|ring",
    ),
    _rule(
        r"^I (?:don't|do not) (?:want|need) (?:any (?:more )?)?(?:phone )?calls(?: (?:anymore|"
        r"from you))?$",
        _no_calls,
    ),
    _rule(
        r"^(?:please |you can |you could )?(?:(?:only|just|always) )?(?P<v>call|text|email|"
        rf"e-mail|phone|reach|contact) me (?P<x>{_CONTACT_TIME.pattern}.*)",
        _contact_when(negated=False),
        needs="call|text|email|e-mail|phone|reach|contact",
    ),
    _rule(
        r"^(?:the )?(?:best|easiest|preferred|quickest|fastest|only) (?P<what>way|method|time) "
        r"to (?:reach|contact|get (?:a ?hold of|in touch with)) me (?:is|would be|'s) "
        r"(?:by |through |via |over |on |at )?(?P<x>.+)",
        _best_way,
        needs="best|easiest|preferred|quickest|fastest|only",
    ),
    _rule(
        rf"^I(?:'d| would) {ADV}rather (?:you |y'all |you guys )?(?P<v>text|email|e-mail|"
        r"message)(?: me)?\b.*",
        _text_me,
    ),
    _rule(
        r"^I(?:'d| would) {ADV}rather not (?:get|have|take|receive) (?:any )?(?:phone )?calls\b"
        r"|^I(?:'d| would) {ADV}rather not be called\b",
        _no_calls,
    ),
    # -- work shifts, sign-ups
    _rule(
        rf"^{I_AM} {ADV}(?:on|working) (?P<x>(?:the )?(?:nights|days|night shifts?|day shifts?|"
        r"evenings|weekends|overnights|graveyard|nights and weekends)\b.*)",
        _fmt("Works {x}", HABIT),
        needs="night|day|evening|weekend|overnight|graveyard",
    ),
    _rule(
        rf"^I {ADV}(?:just |finally )?(?:signed up|registered|enrolled) (?:for|in) (?P<x>.+)",
        _fmt("Signed up for {x}", LIFE),
        needs="signed up|registered|enrolled",
    ),
    # -- what someone else said: "Dr. Okafor said I need a filling"
    _rule(
        r"^(?:(?:Dr|Mr|Mrs|Ms)\.? \w+|my (?:doctor|dentist|vet|endo|cardiologist|nurse|"
        r"pharmacist)|the (?:doctor|dentist|vet|nurse|pharmacist)|she|he|they) (?:said|says|"
        r"told me|mentioned|thinks) (?:that )?(?P<x>(?:I|I'm|I've|my|we|we're|our)\b.+)",
        _reported,
        needs="said|says|told|mentioned|thinks",
    ),
    # -- codes
    _rule(
        r"^(?:the |my |our )?(?P<w>(?:gate|door|garage|lockbox|lock box|alarm|building|entry|"
        r"access|buzzer|keypad|key pad) )?code(?:'s| is) (?P<x>.+)",
        _code,
        needs="code",
    ),
    # -- delivery addresses
    _rule(
        r"^(?:please )?(?:just )?(?:go ahead and )?(?P<v>ship|send|deliver|mail|drop|bring|"
        r"forward|overnight) (?:it|them|that|this|those|these|everything|(?:the|my|our) "
        r"(?:[\w-]+ ){0,3}?[\w-]+)(?: (?:off|over|out))? (?:to|at) (?P<x>.+)",
        _delivery,
        needs="ship|send|deliver|mail|drop|bring|forward|overnight",
    ),
    _rule(
        rf"^(?:I(?:'d| would) {ADV}(?:like|want|prefer|rather have)|I {ADV}(?:want|need)) "
        r"(?:it|them|that|this|the (?:[\w-]+ ){0,3}?[\w-]+|my (?:[\w-]+ ){0,3}?[\w-]+) "
        r"(?:to be )?(?:shipped|sent|delivered|mailed|dropped off|brought) (?:to|at) (?P<x>.+)",
        _delivery,
    ),
    _rule(
        r"^(?:my |the |our )?(?:shipping|delivery) address (?:is|should be|'s|will be|would be) "
        r"(?P<x>.+)",
        _delivery,
        needs="address",
    ),
    _rule(
        r"^(?:it|they|the (?:package|order|delivery|parcel|box|shipment|replacement|card)) "
        r"(?:should|can|needs to|has to|will) (?:go|be (?:sent|shipped|delivered|mailed)) "
        r"to (?P<x>.+)",
        _delivery,
        needs="go|sent|shipped|delivered|mailed",
    ),
    # -- contact as said on the phone
    _rule(
        r"^(?:please )?(?:(?:just|only) )?(?P<v>text|email|e-mail|call|message) me,? "
        r"(?:from now on|going forward|only|from here on(?: out)?)\b.*",
        _contact_pref,
        needs="from now on|going forward|only|from here on",
    ),
    _rule(
        r"^(?P<v>texts?|text messages?|emails?|e-mails?|calls?|phone calls?) only\b.*"
        r"|^only (?P<w>texts?|emails?|calls?)\b.*",
        lambda m, ctx: _contact_pref(m, ctx) if m["v"] else None,
        needs="only",
    ),
    _rule(r"^(?:please )?start (?P<v>texting|emailing|calling|messaging) me\b.*", _contact_pref),
    _rule(
        r"^(?:please )?(?:(?:just|only) )?(?P<v>text|email|e-mail|call) me when (?P<x>.+)",
        _contact_when_ready,
        needs=" me when",
    ),
    _rule(
        r"^(?:for [\w ]{1,25}?,? )?(?:please )?(?:(?:just|only|always) )?(?P<v>call|text) "
        r"(?:me on |me at )?(?:my|the) (?P<x>(?:cell|house|home|work|mobile|land ?line|office|"
        r"daytime)(?: (?:phone|line|number))?)(?:,? (?:not|don't|do not|rather than|instead of) "
        r"(?P<y>.+))?$",
        _contact_line,
        needs="call|text",
    ),
    _rule(
        r"^(?:please )?(?:(?:just|only) )?(?P<v>email|e-mail|text|mail) (?:me )?(?P<x>everything|"
        r"(?:all )?(?:the |my |our )?(?:final |monthly |paper )?(?:bills?|statements?|receipts?|"
        r"confirmations?|itinerary|itineraries|documents|paperwork|invoices?|reminders?|notices?|"
        r"updates?))(?:,? (?:and )?(?:don't|do not|not|rather than|instead of|no) (?P<y>.+))?$",
        _documents_by,
        needs="email|e-mail|text|mail",
    ),
    _rule(
        r"^(?:please )?(?:stop|quit|no more|don't|do not) (?:mailing|sending|mail) (?:me )?"
        r"(?:the )?(?:paper )?(?P<x>bills?|statements?|invoices?|paperwork|letters)\b.*",
        _no_paper,
        needs="mail|send",
    ),
    # -- doctors
    _rule(
        r"^(?:please )?(?:put|switch|move|assign|change|transfer) (?:me|us|him|her) (?:over )?"
        r"(?:with|to) (?P<x>(?:Dr\.?|Doctor) (?-i:[A-Z])[\w'-]+(?: (?-i:[A-Z])[\w'-]+)?)",
        _fmt("Wants to switch to {x}", PLAN, key="doctor"),
        needs="dr|doctor",
    ),
    # -- billing
    _rule(
        r"^(?:please )?(?:switch|move|change|put|sign)"
        r"(?: me| us| my (?:account|billing|payments?))? (?:up )?(?:over )?(?:to|for|on) "
        r"(?P<x>(?:paying )?(?:annual|annually|monthly|quarterly|"
        r"yearly|semi-?annual\w*|auto-?pay|automatic payments|paperless|e-?bill\w*|budget billing)"
        r"\b.*)",
        _fmt("Wants to switch to {x}", PREFERENCE, key="billing"),
        needs="annual|monthly|quarterly|yearly|auto|paperless|bill",
    ),
    # -- values and dates asked to change
    _rule(
        r"^(?:please )?(?:(?:go ahead and|just) )?(?P<v>change|bump|raise|increase|lower|reduce|"
        r"set|update|move|up|drop|push|make) (?P<o>the|my|our|his|her) (?P<w>(?:[\w-]+ ){0,2}?"
        r"[\w-]+) (?:up |down |back )?to (?P<x>.+)",
        _value_change,
        needs=" to ",
    ),
    _rule(
        r"^(?P<v>leave|fly out|fly|depart|return|come back|head out|check in|check out) (?P<x>.+)",
        _travel_request,
        needs="leave|fly|depart|return|come back|head out|check",
    ),
    # -- seats and meals asked for
    _rule(
        r"^(?P<lead>(?:[\w',]+ ){0,6}?)(?:an? |the )?(?P<x>aisle|exit[- ]row|bulkhead|window|"
        r"middle|front[- ]row|back[- ]row)(?P<s> seats?| seating)?\b(?!-).*$",
        _seat,
        needs="aisle|exit|bulkhead|window|middle|front|back",
    ),
    _rule(
        r"^(?:.{0,40}?\b)?(?P<x>vegetarian|vegan|kosher|halal|gluten[- ]free|dairy[- ]free|"
        r"nut[- ]free|low[- ]sodium|low[- ]salt|diabetic|pescatarian) (?:meals?|options?|menu)\b",
        _meal,
        needs="meal|option|menu",
    ),
)

_MORE_DOMAIN_RULES: tuple[_Rule, ...] = (
    _rule(
        rf"^(?:(?:{I_AM}|we(?:'re| are)) {ADV}(?:currently |still |now )?(?:on|with|signed up for|"
        rf"subscribed to)|(?:I|we)(?:'ve| have)? {ADV}(?:currently |still )?(?:have|got|pay for)) "
        r"(?P<x>(?:the |a |an |our |my |that )?(?:[\w$'.-]+ ){0,4}?(?:plan|package|tier|"
        r"subscription|membership|bundle)\b.*)",
        _on_plan,
        needs="plan|package|tier|subscription|membership|bundle",
    ),
    _rule(
        r"^my (?:current |phone |cell |internet |data )?(?:plan|package|subscription) (?:is|'s) "
        r"(?!to\b)(?P<x>.+)",
        _fmt("Current plan is {x}", LIFE, key="plan"),
    ),
    _rule(r"^my plan is to (?P<x>.+)", _plan("Plans to {x}")),
    # -- people, pets
    _rule(
        rf"^(?:she|he)(?:'s| is) (?:my|our) (?:[\w-]+ )?(?P<rel>{_KIN})$",
        _pronoun_is_relative,
        needs="my|our",
    ),
    _rule(
        rf"^(?P<n>(?-i:[A-Z])[a-z]+(?: (?-i:[A-Z])[a-z]+)?)(?: is|'s) (?:my|our) "
        rf"(?:[\w-]+ )?(?P<rel>{_KIN})\b",
        _name_is_relative,
        needs="my|our",
    ),
    _rule(
        rf"^(?P<own>her|his|their) (?P<rel>{_KIN})(?:'s name)? is (?P<n>(?:(?:Dr|Mr|Mrs|Ms)\.? )?"
        r"(?-i:[A-Z])[a-z]+(?: (?-i:[A-Z])[a-z]+)?)$",
        _their_relative_is,
        needs=" is ",
    ),
    _rule(
        r"^(?P<n>(?-i:[A-Z])[a-z]+)(?:'s| is) (?:a |an )?(?:strict |strictly |totally |very )?"
        r"(?P<x>(?:vegetarian|vegan|pescatarian|gluten[- ]free|dairy[- ]free|kosher|halal|"
        r"lactose[- ]intolerant|celiac|diabetic|allergic to .+)\b.*)",
        _named_diet,
        needs=(
            "vegetarian|vegan|pescatarian|gluten|dairy|kosher|halal|lactose|celiac|diabetic|"
            "allergic"
        ),
    ),
    _rule(
        rf"^(?:I|we)(?:'ve| have)? {ADV}(?P<v>adopted|got|rescued|brought home) (?P<x>(?:a|an|"
        rf"another|two) (?:[\w-]+ ){{0,3}}?(?P<rel>{_PETS})\b.*)",
        _adopted,
        needs="adopted|got|rescued|brought home",
    ),
    _rule(
        rf"^(?P<own>her|his|their) (?P<rel>{_KIN}),? (?P<n>(?-i:[A-Z])[a-z]+),? "
        r"(?P<x>(?:is|'s|are|was|has|had|will|can|can't|just|also|(?-i:[a-z]+(?:s|ed)))\b.*)",
        _their_relative_says,
    ),
    _rule(
        rf"^(?P<own>my|our) (?P<rel>{_KIN}),? (?P<n>(?-i:[A-Z])[a-z]+),? "
        r"(?P<x>(?-i:[a-z]+(?:s|ed))\b.*)",
        _relative_says,
    ),
    _rule(
        r"^(?P<p>he|she)(?P<x>(?:'s|'d| is| has| was| had| needs| takes| gets| got| can't| "
        r"cannot| won't| doesn't| loves| hates| likes| just| also| still| lives| works| "
        r"turned| turns)\b.*)",
        _pronoun_says,
    ),
    _rule(r"^(?P<p>his|her) name(?:'s| is) (?P<n>.+)", _pronoun_name),
    _rule(
        r"^(?P<n>(?-i:[A-Z])[a-z]+) (?P<x>(?:is|'s|has|had|was|needs|takes|gets|got|loves|hates|"
        r"turned|turns|just|also|can't|won't|lives|works|picks|comes|helps|drives)\b.*)",
        _named_says,
    ),
    # -- events with a date, slots taken
    _rule(
        rf"^(?:the |my |our |his |her |their )?(?P<w>(?:[\w'-]+ )?(?:{_EVENT_NOUN}))(?P<v>'s| is|"
        r" was| will be|'ll be| got| has been)?(?P<m> (?:moved|changed|pushed|rescheduled|"
        r"postponed|bumped))?(?: now)?(?P<p> (?:on|in|at|from|to|for))? (?P<x>.+)",
        _event_date,
        needs=(
            "conference|wedding|graduation|surgery|procedure|operation|move|closing|trip|"
            "flight|party|birthday|anniversary|interview|meeting|reunion|funeral|vacation|"
            "delivery|install|due|date|class|lesson|recital|game|tournament|race|marathon|"
            "shower|ceremony|recheck|shift|start|first|day|lease|appointment|cleaning|check|"
            "visit|follow|exam|lunch|dinner|reservation|booking"
        ),
    ),
    _rule(_SLOT_TAKEN.pattern, _slot_taken),
    # -- money: savings goals, amounts
    _rule(
        rf"^(?:{I_AM}|we(?:'re| are)|I|we) {ADV}(?P<v>trying|hoping|planning|looking|aiming|want|"
        r"wanting|wanna|need|needing|going|gonna|working)(?: to| on)? (?P<s>save|saving|"
        r"put away|putting away|set aside|setting aside) (?:up )?(?P<x>.+)",
        _save_goal,
        needs="save|saving|put away|putting away|set aside|setting aside",
    ),
    _rule(
        rf"^(?:{I_AM}|we(?:'re| are)) {ADV}saving (?P<x>(?:up )?(?:for|to|toward|towards)\b.+|"
        rf"(?:up )?(?:about |around |like |roughly )?{_NUMBER}.*)",
        _fmt("Saving {x}", GOAL, key="savings_goal"),
        needs="saving",
    ),
    _rule(
        r"^my (?:main |big |savings? |financial )?goal is (?:to )?(?P<x>(?:save|put away|have|"
        r"get to|hit|reach|pay off)\b.+)",
        lambda m, ctx: (
            _fmt("Goal is to {x}", GOAL, key="savings_goal")(m, ctx)
            if _HAS_NUMBER.search(m["x"])
            else None
        ),
    ),
    _rule(
        r"^(?:I|we)(?:'ve| have)? (?:already |just |finally )?(?P<v>saved(?: up)?|put away|"
        r"set aside|socked away|have|got|'ve got) (?P<x>(?:about |around |roughly |almost |"
        r"nearly |over |just over |just under |maybe |close to |like )?"
        rf"{_NUMBER}.*)",
        _has_saved,
        needs="saved|put away|set aside|socked|have|got",
    ),
    _rule(
        r"^(?:(?:my|our|the) )?(?P<w>(?:monthly |annual |yearly |total |current |new |old )?"
        r"(?:budget|rent|mortgage payment|mortgage|income|salary|savings|balance|deductible|"
        r"copay|co-pay|"
        r"premium|monthly payment|car payment|payment|bill|credit limit|limit|credit score|debt|"
        r"loan|student loans?|paycheck|take-home|down payment|price range|target))(?:'s| is| "
        r"was| comes to| runs| will be| would be| is like| is about) (?P<x>.+)",
        _money_is,
        needs=(
            "budget|rent|mortgage|income|salary|savings|balance|deductible|copay|co-pay|"
            "premium|payment|bill|limit|score|debt|loan|paycheck|take-home|price|target"
        ),
    ),
    _rule(
        rf"^(?:I|we) {ADV}(?P<v>owe|make|earn|bring home|take home|spend|pay) (?P<x>"
        rf"(?:about |around |roughly |almost |nearly |over |under |maybe |close to )?{_NUMBER}.*)",
        _money_verb,
        needs="owe|make|earn|bring home|take home|spend|pay",
    ),
    # -- travel
    _rule(
        rf"^(?:{I_AM}|I are|we(?:'re| are)|(?:my|our) (?:[\w-]+ )?and I are|"
        rf"(?:my|our) family (?:is|are)) {ADV}(?P<v>thinking(?: about| of)?|looking at|"
        r"considering|planning(?: on"
        r"(?: going to)?| a trip to| to go to| to visit| to travel to)?|hoping to (?:go to|"
        r"visit|travel to|get to)|going(?: to| back to)?|heading(?: to| out to| back to| over "
        r"to)?|headed(?: to| back to| out to)?|flying(?: to| out to| into| down to| up to)|"
        r"travell?ing to|off to|visiting|taking (?:a|the (?:kids|family)) (?:trip|vacation) to|"
        r"driving (?:down |up |over )?to|leaving for)(?: going)? (?:a (?:trip|vacation|holiday|"
        r"cruise) (?:to|in) )?(?:going to )?(?P<x>(?-i:[A-Z])[\w'.-]*(?:,? (?-i:[A-Z])[\w'.-]*)"
        r"{0,3})(?P<r>.*)$",
        _trip,
        needs=(
            "thinking|looking|considering|planning|hoping|going|heading|headed|flying|travel|"
            "off to|visiting|taking|driving|leaving"
        ),
    ),
    _rule(
        rf"^I {ADV}need (?P<x>(?:a|an|two|three|four|\d+) (?:(?:one-way|round-trip|return|"
        r"direct|nonstop|cheap) )?(?:flights?|tickets?|hotel(?: rooms?)?|rooms?|rental car|"
        r"car rental)\b.+)",
        _travel_need("Needs {x}"),
        needs="flight|ticket|hotel|room|rental|car",
    ),
    _rule(
        rf"^I(?:'d| would) {ADV}like (?:to book )?(?P<x>(?:a|an|two|three|four|\d+) "
        r"(?:(?:one-way|round-trip|return|direct|nonstop|cheap) )?(?:flights?|tickets?|"
        r"hotel(?: rooms?)?|rooms?|rental car|car rental)\b.+)",
        _travel_need("Wants {x}"),
        needs="flight|ticket|hotel|room|rental|car",
    ),
    _rule(
        rf"^(?:I|we) {ADV}(?P<v>fly|leave|depart|return|get back|come back|check in|check out|"
        r"land|arrive|close|move in|move out|start|graduate|retire)"
        r"(?P<x>(?: (?:out|back|home|in))? .+)",
        _travel_when,
        needs=(
            "fly|leave|depart|return|get back|come back|check|land|arrive|close|move|start|"
            "graduate|retire"
        ),
    ),
    # -- seats and diet
    _rule(
        rf"^{I_AM} {ADV}(?:a |an )?(?:strict |strictly |mostly |fully |full )?(?P<x>(?:vegetarian|"
        r"vegan|pescatarian|pescetarian|plant[- ]based|gluten[- ]free|dairy[- ]free|kosher|halal|"
        r"keto|paleo|lactose[- ]intolerant|celiac)\b.*|on a (?:[\w-]+ ){1,2}diet\b.*)",
        _diet,
        needs=(
            "vegetarian|vegan|pescatarian|pescetarian|plant|gluten|dairy|kosher|halal|keto|"
            "paleo|lactose|celiac|diet"
        ),
    ),
    _rule(
        rf"^(?:I|we) {ADV}(?:don't|do not|can't|cannot|never|won't) (?P<v>eat|have|do|drink|"
        rf"touch) (?P<x>(?:any )?(?:{_FOOD})\b.*)",
        _does_not_eat,
        needs="eat|have|do|drink|touch",
    ),
    _rule(
        rf"^(?:no|nothing with|without) (?P<x>(?:{_FOOD})(?:(?:,| or| and) (?:{_FOOD}))*)$",
        _fmt(_AVOIDS, PREFERENCE, continues=_AVOIDS),
        needs="no|nothing|without",
    ),
    _rule(rf"^I {ADV}avoid (?P<x>(?:{_FOOD})\b.*)", _fmt(_AVOIDS, PREFERENCE, continues=_AVOIDS)),
    # -- fraud and disputed charges
    _rule(
        rf"^(?:there(?:'s| is| are|'re| was| were)|I {ADV}(?:see|saw|noticed|found|have|got|"
        rf"spotted)|{I_HAVE} {ADV}(?:got|noticed|found|seen|spotted)) (?P<x>(?:a |an |some |two |"
        r"three |four |several |multiple |a few |a couple (?:of )?|this |these |like )?"
        rf"(?:[\w$.,'-]+ ){{0,4}}?{_TRANSACTION}\b.*)",
        _fraud("Reported {x}", _FRAUD_CUE),
        needs="charge|transaction|purchase|withdrawal|payment|debit|transfer",
    ),
    _rule(
        r"^(?:someone|somebody) (?:has |must have |might have |may have )?(?P<x>(?:used|stole|"
        r"charged|hacked|got into|accessed|took|opened|withdrew|made|bought|spent|cloned|"
        r"skimmed|logged into|changed)\b.*)",
        _fraud("Someone {x}", _FRAUD_OBJECT),
        needs="someone|somebody",
    ),
    _rule(
        rf"^I {ADV}(?P<v>didn't|did not|never) (?:make|authorize|authorise|buy|order|approve|"
        rf"sign up for) (?P<x>(?:this|that|these|those|the|a|any|some|two|three) "
        rf"(?:[\w$.,'-]+ ){{0,3}}?{_TRANSACTION}\b.*)",
        _fraud("Did not authorise {x}", _ANYTHING),
        needs="didn't|did not|never",
    ),
    _rule(
        rf"^I {ADV}(?:don't|do not) recogni[sz]e (?P<x>.*{_TRANSACTION}\b.*)",
        _fraud("Does not recognise {x}", _ANYTHING),
        needs="recogni",
    ),
    _rule(
        r"^(?:I|we) (?:was|were|got|have been|'ve been|just got|keep getting) "
        r"(?P<x>(?:double[- ]charged|charged twice|charged two times|billed twice|"
        r"double[- ]billed|overcharged|charged for something|scammed|hacked|defrauded|"
        r"phished)\b.*)",
        _fraud("Was {x}", _ANYTHING),
        needs="charged|billed|scammed|hacked|defrauded|phished",
    ),
)

_DOMAIN_RULES = _MEDICATION_RULES + _REQUEST_RULES + _MORE_DOMAIN_RULES

# A question that is a request the caller makes ("can you switch me to...?", "could I get
# an aisle seat?"): only these rules read it, as if said outright.
_REQUEST_QUESTION = re.compile(
    r"^(?:(?:can|could|would|will) (?:you|ya)|is it possible to|any chance you could|"
    r"do you think you could|would you mind)(?: (?:please|just|maybe|possibly|go ahead and))*"
    r" (?P<x>.+?)[?.!]*$"
    r"|^(?:can|could|may) (?:I|we)(?: (?:please|just|maybe|possibly|also))*"
    r" (?P<v>get|have|switch|change|upgrade|downgrade|move|go|sit|bump|set|raise|lower|increase|"
    r"leave|fly out|fly|return|come back|start|push|pay|put) (?P<y>.+?)[?.!]*$",
    re.IGNORECASE,
)


# ------------------------------------------------------------ the agent's side

# What the agent booked ("you're booked for Thursday at 2 PM"), moved or cancelled; the
# object is optional, the appointment type then comes from the conversation so far.
_BOOKED = re.compile(
    r"\b(?:"
    r"(?:I|we)(?:'ve| have)? (?:just |now |successfully |gone ahead and )?"
    r"(?:booked|scheduled|confirmed|reserved|put) (?P<o1>you(?:r [\w' -]+?)?|(?:a|an|the) "
    r"[\w' -]+?|(?P<who>(?-i:[A-Z][a-z]+)(?: and (?-i:[A-Z][a-z]+))?))(?: down| in)?"
    r"|you(?:'re| are) (?:all |now )*(?:booked|scheduled|confirmed|set)(?: in| up)?"
    r"|(?P<o2>your [\w' -]+?) (?:is|has been) (?:now |all )*(?:booked|scheduled|confirmed|set)"
    r"(?: up)?"
    r"|(?:I|we)(?:'ve| have)? got you (?:down|booked|scheduled|in)"
    r"|(?:I|we) have you (?:down|booked|scheduled|in)"
    r") (?P<rest>(?:for|on|at|with|next|this|tomorrow|today)\b.+)$",
    re.IGNORECASE,
)
_MOVED = re.compile(
    r"\b(?:"
    r"(?:I|we)(?:'ve| have)? (?:just |now |gone ahead and )?"
    r"(?:moved|rescheduled|changed|pushed|switched|bumped) "
    r"(?P<o1>your [\w' -]+?|it|that|you|the [\w' -]+?)(?: back| over| forward)?"
    r"|(?P<o2>your [\w' -]+?) (?:is|has been) (?:now )?(?:moved|rescheduled|changed)"
    r") (?:to|for|until) (?P<rest>.+)$",
    re.IGNORECASE,
)
_CANCELLED = re.compile(
    r"\b(?:"
    r"(?:I|we)(?:'ve| have)? (?:just |now |gone ahead and )?cancell?ed "
    r"(?P<o1>your [\w' -]+?|it|that|the [\w' -]+?)"
    r"|(?P<o2>your [\w' -]+?) (?:is|has been) (?:now )?cancell?ed"
    r")(?P<rest>(?: (?:on|for|at|next|this|tomorrow|today)\b.*)?)$",
    re.IGNORECASE,
)
# An appointment the agent mentions as standing: "Your next cleaning is on Friday at 10".
_STANDING = re.compile(
    rf"\byour (?:next |upcoming )?(?P<o>(?:[\w-]+ )?(?:{_APPOINTMENT})) (?:is|'s) "
    r"(?:still )?(?:scheduled |booked |set )?(?P<rest>(?:on|at|for|next|this|tomorrow|today)\b.+)$",
    re.IGNORECASE,
)
# A confirmation preceded by one of these did not happen ("I couldn't book you...").
_NEGATED = re.compile(r"\b(?:not|n't|unable|cannot|unfortunately|if|once|when)\b", re.I)


def _context_appointment(ctx: _Context) -> tuple[str | None, tuple[int, ...]]:
    """The most recent specific appointment type mentioned ("cleaning"), and where."""
    for index in range(ctx.turn, -1, -1):
        if ctx.roles[index] not in ("user", "agent"):
            continue
        found = _SPECIFIC_APPOINTMENT.findall(ctx.turns[index])
        if found:
            return found[-1].lower(), (() if index == ctx.turn else (index,))
    return None, ()


def _their(obj: str | None, ctx: _Context) -> tuple[str, tuple[int, ...]]:
    """The appointment an agent spoke of, as the caller's: "your cleaning" -> "their cleaning"."""
    noun = _trim(obj or "")
    lowered = noun.lower()
    if lowered.startswith("your "):
        return "their " + noun[5:], ()
    if lowered.startswith("the ") and _APPOINTMENT_WORD.search(noun):
        return "their " + noun[4:], ()
    kind, turns = _context_appointment(ctx)
    return f"their {kind or 'appointment'}", turns


# The agent writing down what the caller said: "I've noted that you prefer mornings".
_NOTED = re.compile(
    r"\b(?:I|we)(?:'ve| have)? (?:noted|made a note|added a note|written down|put it in your "
    r"(?:file|notes|chart))(?: down)?,? (?:that )?(?P<x>you(?:'re| are|'ve| have)? .+)$",
    re.IGNORECASE,
)
_FIRST_PERSON = {
    "you're": "I'm",
    "you are": "I am",
    "you've": "I've",
    "you have": "I have",
    "your": "my",
    "yours": "mine",
    "yourself": "myself",
}
_YOU = re.compile(
    r"(?<![\w'])(?:you're|you are|you've|you have|yourself|yours|your|you)(?![\w'])", re.I
)


def _as_caller(text: str) -> str:
    """The agent's words about the caller, as the caller would say them ("you" -> "I")."""
    subject = True

    def swap(match: re.Match[str]) -> str:
        nonlocal subject
        word = match[0].lower()
        # The first "you" is the subject; later ones are objects ("remind you").
        replacement = ("I" if subject else "me") if word == "you" else _FIRST_PERSON[word]
        subject = False
        return replacement

    return _YOU.sub(swap, text)


def _agent_notes(sentence: str, ctx: _Context) -> list[_Found]:
    """What the agent says it wrote down about the caller, read as the caller saying it."""
    if sentence.endswith("?") or not any(hint in sentence for hint in _NOTED_HINTS):
        return []
    noted = _NOTED.search(_strip_end(_CLAUSE_END, sentence))
    if noted is None:
        return []
    found: list[_Found] = []
    for clause in _clauses(_as_caller(noted["x"])):
        found += _match(_strip_end(_CLAUSE_END, clause), ctx)
    return found


_NOTED_HINTS = ("note", "written", "file", "chart")
_BOOKED_HINTS = ("book", "schedul", "confirm", "reserv", "put", " set", "got you", "have you")
_MOVED_HINTS = ("moved", "reschedul", "changed", "pushed", "switched", "bumped")


# A plan the agent moved the caller to ("I've switched you to the unlimited plan"), or
# one it says they are on ("you're currently on the basic plan").
_PLAN_SWITCHED = re.compile(
    r"\b(?:(?:I|we)(?:'ve| have)? (?:just |now |successfully |gone ahead and |already )*"
    r"(?P<v>switched|moved|changed|upgraded|downgraded|put|signed|transferred) you (?:up )?"
    r"(?:over )?(?:to|on|onto|for|with)"
    r"|you(?:'re| are) (?:all )?now (?:set )?(?:on|(?P<w>switched|upgraded|downgraded|moved) to|"
    r"signed up for|set up (?:on|with)|enrolled in)"
    r"|your (?:plan|package|subscription|account|service) (?:is|has been) (?:now )?"
    r"(?P<u>changed|switched|updated|upgraded|downgraded|moved) to"
    r"|you(?:'re| are) (?P<on>currently|still) on) (?P<x>.+)$",
    re.IGNORECASE,
)
_PLAN_HINTS = (
    "plan",
    "package",
    "subscription",
    "tier",
    "unlimited",
    "premium",
    "membership",
    "gig",
    "upgraded you",
    "downgraded you",
    "switched you",
)


def _agent_plan(clause: str, lowered: str) -> _Found | None:
    match = _PLAN_SWITCHED.search(clause)
    if match is None or _NEGATED.search(clause[: match.start()]):
        return None
    x = _about_caller(_trim(match["x"]))
    if not _PLAN_WORD.search(x) or _NOT_PLAN.search(x):
        return None
    if match["on"]:
        return _Found(f"Is on {x}", LIFE, "plan")
    verb = (match["v"] or match["w"] or match["u"] or "").lower()
    done = verb.capitalize() if verb in ("upgraded", "downgraded") else "Switched"
    return _Found(f"{done} to {x}", EVENT, "plan", confirms="plan")


def _agent_event(clause: str, ctx: _Context) -> _Found | None:
    """A booking, reschedule or cancellation the agent confirmed, as a memory of the caller."""
    lowered = clause.lower()
    if any(hint in lowered for hint in _PLAN_HINTS):
        plan = _agent_plan(clause, lowered)
        if plan is not None:
            return plan
    found = _agent_booking(clause, lowered, ctx)
    if found is not None:
        return found
    readback = _agent_readback(clause, ctx) if _HAS_DAY.search(clause) else None
    if readback is None and _VALUE_HINTS.search(lowered):
        return _agent_value(clause, lowered)
    return readback


def _agent_booking(clause: str, lowered: str, ctx: _Context) -> _Found | None:
    """A booking, reschedule or cancellation in the agent's own words."""
    # Substring checks first: most agent clauses confirm nothing, and these are cheap.
    maybe_booked = any(word in lowered for word in _BOOKED_HINTS)
    match = _BOOKED.search(clause) if maybe_booked else None
    if match and not _NEGATED.search(clause[: match.start()]):
        rest = _trim(match["rest"])
        if not _TIME.search(rest):
            return None
        obj = match["o1"] or match["o2"]
        extra: tuple[int, ...] = ()
        if match["who"]:
            # The caller booked for someone else ("I've booked Leo at 10 and Mia at 10:30").
            kind, extra = _context_appointment(ctx)
            booked = f"{kind} appointments" if kind else "appointments"
            content = f"Booked {booked} for {match['who']} {_about_caller(rest)}"
            return _Found(content, EVENT, confirms="book", extra_turns=extra)
        what_match = _FOR_WHAT.match(rest)
        if what_match:
            what = what_match["w"]
            rest = what_match["r"]
        elif obj and obj.lower() != "you" and not obj.lower().startswith("the "):
            what = _their(obj, ctx)[0]
        else:
            kind, extra = _context_appointment(ctx)
            what = kind or "appointment"
        what = re.sub(r"^their ", "", what, flags=re.I)
        if not re.match(r"(?:a|an) ", what, re.I):
            what = f"{_article(what)} {what}"
        content = f"Has {what} booked {_about_caller(_booked_for(rest))}"
        return _Found(content, EVENT, confirms="book", extra_turns=extra)
    moved = any(word in lowered for word in _MOVED_HINTS)
    match = _MOVED.search(clause) if moved else None
    if match and not _NEGATED.search(clause[: match.start()]):
        rest = _trim(match["rest"])
        if not _TIME.search(rest):
            return None
        what, extra = _their(match["o1"] or match["o2"], ctx)
        content = f"Rescheduled {what} to {_about_caller(rest)}"
        return _Found(content, EVENT, confirms="move", extra_turns=extra)
    match = _CANCELLED.search(clause) if "cancel" in lowered else None
    if match and not _NEGATED.search(clause[: match.start()]):
        what, extra = _their(match["o1"] or match["o2"], ctx)
        rest = _about_caller(_trim(match["rest"]))
        content = f"Cancelled {what} {rest}".rstrip()
        return _Found(content, EVENT, confirms="cancel", extra_turns=extra)
    match = _STANDING.search(clause) if "your" in lowered else None
    if match and _TIME.search(match["rest"]):
        # Not a confirmation of anything done in the call: a later booking or move replaces it.
        what = _trim(match["o"])
        rest = _about_caller(_trim(match["rest"]))
        return _Found(f"Has {_article(what)} {what} {rest}", EVENT, request="any")
    return None


# Which slot an agent's question asks for; the first that matches wins (an "email
# address" is an email, not an address).
_SLOT_QUESTIONS = (
    # Someone else's name ("What's your son's name?", "And her full name?") or details.
    ("person", _PERSON_QUESTION),
    ("email", re.compile(r"\be-?mail\b", re.I)),
    (
        "date_of_birth",
        re.compile(
            r"\b(?:date of birth|birth ?date|birthday|when were you born|d\.?o\.?b)\b", re.I
        ),
    ),
    (
        "phone",
        re.compile(
            r"\b(?:phone number|(?:best|callback|call-back|contact|good|cell|mobile) number|"
            r"number (?:to reach you|we can reach you|for you))\b",
            re.I,
        ),
    ),
    (
        "home_city",
        re.compile(
            r"\b(?:(?:what|which) (?:city|town|area)|where (?:do you live|are you (?:located|"
            r"based)|do you reside))\b",
            re.I,
        ),
    ),
    ("address", re.compile(r"\baddress\b", re.I)),
    ("allergy", re.compile(r"\ballerg", re.I)),
    ("insurance", re.compile(r"\b(?:insurance|insurer|dental plan|carrier)\b", re.I)),
    (
        "name",
        re.compile(
            r"\b(?:(?:your|the) (?:full |first |first and last )?name|who (?:am I|I'm) "
            r"(?:speaking|talking) (?:with|to))\b",
            re.I,
        ),
    ),
    ("amount", _AMOUNT_QUESTION),
    (
        "party",
        re.compile(
            r"\bhow many(?: (?:people|guests|of you|in (?:your|the) party|will be joining|"
            r"travell?ers|adults|tickets|seats))?\??$|\bparty size\b|\bfor how many\b",
            re.I,
        ),
    ),
    (
        "member_id",
        re.compile(
            r"\b(?:member|policy|account|customer|subscriber|group) (?:id|number|#)\b", re.I
        ),
    ),
)
# An answer that gives nothing: a refusal, a hesitation, a counter-question.
_NO_ANSWER = re.compile(
    r"^(?:no|nope|not|i don't|i do not|i'm not sure|i am not sure|i can't|i cannot|sorry|"
    r"hold on|hang on|wait|one (?:sec|second|moment)|hmm|what|why|let me)\b",
    re.IGNORECASE,
)
# How an answer may open before the value itself.
_ANSWER_LEAD = re.compile(
    r"^(?:(?:yes|yeah|yep|sure|ok|okay|of course|so|absolutely|sure thing|it's|it is|"
    r"that's|that is|that would be|that'd be|mine is|"
    r"my (?:[\w-]+ ){0,2}?(?:name|birthday|date of birth|birth date|email|e-mail|address|"
    r"number|insurance|provider|city)(?:'s| is)|i was born(?: on| in)?|i'm at|i am at|"
    r"i live at|i live in|i'm in|i am in|we're in|i'm with|i am with|we're with|we have|"
    r"i have|i've got|it's under|under|the name is|this is|i'm|i am|"
    r"(?:his|her|their) (?:full |first )?name(?:'s| is))\b[,.:]?\s*)+",
    re.IGNORECASE,
)


def _asked_slot(sentences: list[str]) -> tuple[str, str] | None:
    """The slot the agent's last question in a turn asks for, if any, and the question."""
    questions = [s for s in sentences if s.endswith("?")]
    if not questions:
        return None
    last = questions[-1]
    slot = next((slot for slot, pattern in _SLOT_QUESTIONS if pattern.search(last)), None)
    return (slot, last) if slot else None


def _answer(slot: str, text: str, question: str, ctx: _Context) -> _Found | None:
    """The caller's answer to a slot question, as an identity fact (or, for someone
    else's name, an allergy or an amount, the fact it gives)."""
    sentences = list(_sentences(_strip_start(_GREETING, text)))
    first = sentences[0] if sentences else ""
    if slot == "person":
        return _person_answer(sentences, question, ctx)
    if slot == "amount":
        return _amount_answer(sentences, question)
    if slot == "party":
        return _party_answer(first)
    if not first or first.rstrip().endswith("?") or _NO_ANSWER.match(first):
        return None
    if slot == "allergy":
        return _allergy_answer(_strip_start(_LEADING, first), question, ctx)
    value = _strip_start(_ANSWER_LEAD, first)
    if re.search(r"\b(?:I|I'm|my|me)\b", value):
        return None
    return _slot(slot, value)


def _person_answer(sentences: list[str], question: str, ctx: _Context) -> _Found | None:
    """ "Arjun. Arjun Raman." after "What's his name?": the fullest name said first."""
    rel = _asked_relation(question, ctx)
    if rel is None:
        return None
    names: list[str] = []
    for sentence in sentences[:3]:
        if _NO_ANSWER.match(sentence) and not names:
            return None
        value = _strip_start(_ANSWER_LEAD, _strip_end(_CLAUSE_END, sentence))
        if not value:
            continue
        name = _name(value, strict=True)
        if name is None or name.split()[0] in _NOT_A_NAME:
            break
        if names and not name.startswith(names[0].split()[0]):
            break
        names.append(name)
    if not names:
        return None
    name = max(names, key=len)
    _meet(ctx, rel, name.split()[0])
    born = _BORN_AFTER_NAME.search(sentences[0])
    when = f", born {_trim(born['x'])}" if born else ""
    return _Found(f"Has {_article(rel)} {rel} named {name}{when}", LIFE)


_BORN_AFTER_NAME = re.compile(r"\bborn,? (?:on )?(?P<x>[^.]+)", re.IGNORECASE)


def _asked_relation(question: str, ctx: _Context) -> str | None:
    """Whose name the agent asked for: "your son's name" -> "son"; "his name" -> the
    relative the caller last spoke of."""
    match = _PERSON_NAME_Q.search(question) or _PERSON_ROLE_Q.search(question)
    if match is None:
        return None
    if match["rel"]:
        return match["rel"].lower()
    person = ctx.last_person or ctx.behalf
    if person is None or not person[3]:
        return None
    return person[3]


def _allergy_answer(value: str, question: str, ctx: _Context) -> _Found | None:
    """ "Penicillin." after "Any allergies?"; about a relative when asked "Is his allergy...?"."""
    if re.search(r"\ballerg|^(?:I|I'm|I've|my|we|he|she|they|it|it's|that|there)\b", value, re.I):
        return None  # said as a sentence of its own: the rules read it
    item = _phrase(_trim(re.split(r"[,.;]| - ", value)[0]))
    if item is None or len(item.split()) > 6 or item.lower() in ("none", "nothing", "no"):
        return None
    item = _lower_first(item)
    third = re.search(r"\b(?:his|her|he|she)\b", question, re.I)
    person = ctx.last_person or ctx.behalf
    if third and person is not None:
        return _Found(f"{person[0]} is allergic to {item}", HEALTH)
    if third or re.search(r"\b(?:their|they)\b", question, re.I):
        return None
    return _Found(f"Allergic to {item}", HEALTH)


_PARTY = re.compile(
    rf"^(?:(?:it's|it'll be|there'll be|there will be|just|we're|we are|it's just) )?"
    rf"(?P<n>{_NUMBER})(?: (?:of us|people|guests|adults|total|in total|in all))?$",
    re.IGNORECASE,
)


def _party_answer(first: str) -> _Found | None:
    """ "Eight of us." after "How many?"."""
    match = _PARTY.match(_strip_start(_LEADING, _strip_end(_CLAUSE_END, first)))
    if match is None or not _HAS_NUMBER.search(match["n"]):
        return None
    return _Found(f"Party of {match['n'].lower()}", EVENT, "party_size")


def _amount_answer(sentences: list[str], question: str) -> _Found | None:
    """ "Eighteen thousand? By June." after "How much are you aiming for?"."""
    if not sentences or _NO_ANSWER.match(sentences[0]):
        return None
    value = _strip_start(_ANSWER_LEAD, sentences[0].rstrip("?.! "))
    if not _HAS_NUMBER.search(value) or len(value.split()) > 12:
        return None
    if re.match(
        r"(?:I|I'd|we|we'd|we're|they|it|it's|that's)\b", _strip_start(_LEADING, value), re.I
    ):
        return None
    if len(sentences) > 1 and re.match(
        r"(?:by|before|for|per|a|each|every|in)\b", sentences[1], re.I
    ):
        value = f"{value} {_lower_first(sentences[1])}"
    amount = _phrase(value)
    if amount is None or re.search(r"\b(?:I|I'm|my|me)\b", amount):
        return None
    amount = _lower_first(amount)
    lowered = question.lower()
    if "budget" in lowered or "spend" in lowered:
        return _Found(f"Budget is {amount}", PREFERENCE, "budget")
    if re.search(r"\b(?:sav\w*|aim\w*|goal|target)\b", lowered):
        return _Found(f"Savings goal is {amount}", GOAL, "savings_goal")
    if re.search(r"\b(?:pay|paid|price|cost)\b", lowered):
        return _Found(f"Paid {amount}", LIFE)
    return None


# analysis.data_collected keys (normalised) that name a slot.
_DATA_SLOTS = {
    "name": "name",
    "full_name": "name",
    "caller_name": "name",
    "customer_name": "name",
    "patient_name": "name",
    "user_name": "name",
    "email": "email",
    "email_address": "email",
    "caller_email": "email",
    "date_of_birth": "date_of_birth",
    "dob": "date_of_birth",
    "birthday": "date_of_birth",
    "birth_date": "date_of_birth",
    "phone": "phone",
    "phone_number": "phone",
    "callback_number": "phone",
    "address": "address",
    "home_address": "address",
    "city": "home_city",
    "home_city": "home_city",
    "insurance": "insurance",
    "insurance_provider": "insurance",
    "insurance_company": "insurance",
}
_NON_WORD = re.compile(r"[^a-z0-9]+")


def _data_collected(values: dict[str, Any]) -> Iterator[_Found]:
    for name in sorted(values):
        slot = _DATA_SLOTS.get(_NON_WORD.sub("_", name.lower()).strip("_"))
        value = values[name]
        # ElevenLabs wraps each value: {"value": ..., "rationale": ...}.
        if isinstance(value, dict):
            value = value.get("value")
        if slot is None or not isinstance(value, str):
            continue
        found = _slot(slot, value)
        if found is not None:
            yield found


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


_ALL_USER_RULES = _DOMAIN_RULES + _USER_RULES + _MORE_USER_RULES
# The rules worth trying for a clause, by its first word (in priority order).
_LEADS = frozenset(rule.lead for rule in _ALL_USER_RULES if rule.lead is not None)
_RULES_BY_LEAD = {
    lead: tuple(rule for rule in _ALL_USER_RULES if rule.lead in (lead, None)) for lead in _LEADS
}
_RULES_ANY_LEAD = tuple(rule for rule in _ALL_USER_RULES if rule.lead is None)

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


# ----------------------------------------------------------------------- extractor


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


def _requested(clause: str, ctx: _Context) -> list[_Found]:
    """What a request asked as a question gives: "could you text me instead?"."""
    match = _REQUEST_QUESTION.match(clause)
    if match is None:
        return []
    text = match["x"] or f"{match['v']} {match['y']}"
    text = _strip_end(_CLAUSE_END, text)
    lowered = text.lower()
    for rule in _REQUEST_RULES:
        if rule.needs is not None and rule.needs.search(lowered) is None:
            continue
        found = rule.pattern.match(text)
        built = rule.build(found, ctx) if found else None
        if built is not None:
            return built if isinstance(built, list) else [built]
    return []


def _listed_item(template: str, spec: _Spec, clause: str) -> _Found | None:
    match = _ELLIPSIS.match(clause)
    if match is None or match["x"].split()[0].lower() in _NOT_ITEMS:
        return None
    x = _phrase(match["x"])
    if x is None or x.split()[0].lower() in _PERSON.values():
        return None
    return _Found(template.format(x=x), spec, continues=template)


_FIRST_WORD = re.compile(r"[a-z]+", re.IGNORECASE)


def _match(text: str, ctx: _Context) -> list[_Found]:
    """What the first user rule that matches ``text`` and accepts it makes of it."""
    first = _FIRST_WORD.match(text)
    rules = _RULES_BY_LEAD.get(first[0].lower(), _RULES_ANY_LEAD) if first else _RULES_ANY_LEAD
    lowered = text.lower()
    for rule in rules:
        if rule.needs is not None and rule.needs.search(lowered) is None:
            continue
        match = rule.pattern.match(text)
        if match is None:
            continue
        built = rule.build(match, ctx)
        if built is None:
            continue
        return built if isinstance(built, list) else [built]
    return []


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
