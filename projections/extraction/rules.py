"""The rule-based extractor: English patterns over a transcript, no model, no network.

:class:`RuleExtractor` is the default extractor when no LLM is configured. It reads
the caller's turns (role ``user``) clause by clause and matches them against
precompiled patterns; the agent's turns are context: booking, rescheduling and
cancellation confirmations become events about the caller, what the agent says it
noted ("I've noted that you prefer mornings") is read as the caller saying it, and an
agent question for a common slot (name, date of birth, email, address, city, phone,
insurance) turns the caller's next answer into an identity fact. Simple string values
of the platform's ``analysis.data_collected`` fill the same slots when the transcript
left them empty.

Content is rewritten in the third person about the caller, without a subject
("I'm allergic to penicillin" -> "Allergic to penicillin", "my" -> "their").
Anything the caller asks, greetings, thanks and bare yes/no give nothing.

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
goals, decisions, realisations (reflective)     0.6
feelings                                        0.5
habits                                          0.5
==============================================  ========

A memory said with stress ("really", "very important"...) gets +0.05, and one said
in more than one turn another +0.05, capped at 1.0.

Within one conversation candidates are deduplicated by :func:`normalise_content`
(their turns merged), a slot (``key``) keeps only its latest value, and a request
the agent fulfilled in the same call ("I need to move my cleaning") is folded into
the agent's confirmation rather than kept as an open plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from projections.extraction.candidates import Candidate, Extraction, normalise_content
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


_Build = Callable[[re.Match[str], _Context], "_Found | list[_Found] | None"]
_BuildOne = Callable[[re.Match[str], _Context], "_Found | None"]


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    build: _Build
    lead: str | None
    """The clause's first word when the pattern fixes it ("i", "my"): other clauses skip
    the rule without running the regex, which keeps a long call in a few milliseconds."""


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


def _rule(pattern: str, build: _Build) -> _Rule:
    # Patterns are case-insensitive; (?-i:...) marks the parts that rely on case
    # (a capitalised name).
    return _Rule(re.compile(pattern, re.IGNORECASE), build, _lead(pattern))


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

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
_SPACES = re.compile(r"\s+")
# Hesitations ASR writes out; "you know"/"I mean"/"like" only in their filler position.
_FILLERS = re.compile(
    r"(?<![\w'])(?:u+[hm]+|e+r+m*|h+m+|m{2,}|a+h+)(?![\w'])[,.]?\s*"
    r"|,\s*(?:you know|I mean|like)\s*,|^\s*(?:you know|I mean),\s*",
    re.IGNORECASE,
)
# "I- I'm", "my my tooth": a word stuttered before the real start.
_STUTTER = re.compile(r"\b(\w+)(?:-|,)?\s+(?=\1\b)|\bI-?\s+(?=I')", re.IGNORECASE)
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
    r"|\s+-+\s+",
    re.IGNORECASE,
)
# Words that open a clause without carrying anything: discourse markers, hedges.
_LEADING = re.compile(
    r"^(?:(?:and|but|so|oh|well|also|actually|honestly|basically|anyway|anyways|okay|ok|"
    r"yeah|yes|yep|no|nope|right|alright|all right|sure|great|good|perfect|cool|hi|hello|hey|"
    r"thanks|thank you|by the way|just so you know|i mean|in fact|plus|then|now|though|"
    r"i think(?: that)?|i guess|i believe|i feel like|i'm pretty sure(?: that)?|"
    r"to be honest|of course|you see|listen|look)\b[,.!]?\s*)+",
    re.IGNORECASE,
)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|hiya|good (?:morning|afternoon|evening))(?: there)?"
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
        text = _FILLERS.sub(" ", text)
        text = _STUTTER.sub("", text)
    return _SPACES.sub(" ", text).strip()


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


def _is_question(clause: str) -> bool:
    return clause.rstrip().endswith("?") or bool(_QUESTION_START.match(clause))


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


def _name(text: str | None, *, strict: bool) -> str | None:
    """A person's name from the start of ``text``; ``strict`` wants it capitalised."""
    if text is None:
        return None
    words: list[str] = []
    for raw in _trim(text).split():
        word = raw.strip(",.")
        if word.lower() in _NAME_STOP or not _NAME_WORD.fullmatch(word):
            break
        if strict and not word[0].isupper():
            break
        words.append(word)
        if raw.endswith((",", ".")):
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
        ok = len(_DIGIT.findall(text)) >= 7 and len(text) <= 30
        return _Found(f"Phone number: {text}", IDENTITY, "phone") if ok else None
    if slot == "address":
        ok = words <= 14 and bool(_DIGIT.search(text)) and bool(_LETTER.search(text))
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
    rinse
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
# What may follow "my daughter" for the rest to say something about her.
_VERBISH = (
    r"(?:is|'s|are|'re|was|were|has|have|had|just|also|recently|will|can|can't|cannot|"
    r"needs?|wants?|works?|lives?|goes|go|gets?|got|loves?|likes?|hates?|started|turned|"
    r"moved|plays?|attends?|studies|broke|takes?|graduated|passed|wears?|grinds?|"
    r"starts?|keeps?)\b"
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
    article = "" if rel.endswith("s") or rel == "children" else _article(rel) + " "
    return _Found(f"Has {article}{rel} named {name}", LIFE)


def _relative_says(match: re.Match[str], ctx: _Context) -> _Found | None:
    rest = match["x"]
    if _REL_IDLE.match(rest):
        return None
    x = _phrase(rest)
    if x is None:
        return None
    who = match["rel"].lower()
    if match.groupdict().get("n"):
        who = f"{who} {match['n']}"
    return _Found(f"{_capitalise(who)} {_expand_contraction(x)}", LIFE)


_CONTRACTED = re.compile(r"^'(s|re|ve|d|ll)\b")
_CONTRACTION_FULL = {"s": "is", "re": "are", "ve": "have", "d": "would", "ll": "will"}


def _expand_contraction(text: str) -> str:
    """A predicate that starts contracted ("'s pregnant"), written out ("is pregnant")."""
    match = _CONTRACTED.match(text)
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
    return _Found(f"Lives {prep} {place}", LIFE, "home_city" if city else None)


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
        rf"^my (?P<rel>{_REL})(?:'s name is|,? (?:is )?(?:called|named)) (?P<x>.+)",
        _named_relative,
    ),
    _rule(
        rf"^my (?P<rel>{_REL}),? (?P<n>(?-i:[A-Z])[a-z]+),? (?P<x>{_VERBISH}.*)",
        _relative_says,
    ),
    _rule(rf"^my (?P<rel>{_REL}) (?P<x>{_VERBISH}.*)", _relative_says),
    _rule(
        r"^I have (?P<x>(?:a|an|one|two|three|four|five|six|\d+) (?:(?:little|young|grown|"
        rf"teenage|adult|older|younger|new|newborn|baby|twin) )?(?:{_REL})\b.*)",
        _fmt("Has {x}", LIFE),
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
    r"discolou?red|stained|tender|uncomfortable"
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
    + "|".join((*_WEEKDAYS, *_MONTHS))
    + r"|today|tonight|tomorrow|yesterday|mornings?|afternoons?|evenings?|nights?|noon|"
    r"midnight|weeks?|weekends?|months?|years?|[ap]m|o'clock|ago|last|next|earlier|later|"
    r"soon|recently|\d+(?:st|nd|rd|th)?|\d{1,2}:\d{2})\b",
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


_REL_WORD = re.compile(rf"(?:{_REL})", re.IGNORECASE)


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
        r"vegetarian|vegan|runner|early riser|night owl))\b",
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
        rf"^{I_AM} {ADV}(?P<v>relocating|retiring|travell?ing|going away|having|getting|"
        r"starting|leaving|flying|visiting|expecting)\b(?P<x>.*)",
        lambda m, ctx: _dated(m["v"].capitalize() + "{x}", PLAN)(m, ctx),
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


def _agent_event(clause: str, ctx: _Context) -> _Found | None:
    """A booking, reschedule or cancellation the agent confirmed, as a memory of the caller."""
    lowered = clause.lower()
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
    ("insurance", re.compile(r"\b(?:insurance|insurer|dental plan|carrier)\b", re.I)),
    (
        "name",
        re.compile(
            r"\b(?:(?:your|the) (?:full |first |first and last )?name|who (?:am I|I'm) "
            r"(?:speaking|talking) (?:with|to))\b",
            re.I,
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
    r"i have|i've got|it's under|under|the name is|this is|i'm|i am)\b[,.:]?\s*)+",
    re.IGNORECASE,
)


def _asked_slot(sentences: list[str]) -> str | None:
    """The slot the agent's last question in a turn asks for, if any."""
    questions = [s for s in sentences if s.endswith("?")]
    if not questions:
        return None
    last = questions[-1]
    return next((slot for slot, pattern in _SLOT_QUESTIONS if pattern.search(last)), None)


def _answer(slot: str, text: str) -> _Found | None:
    """The caller's answer to a slot question, as an identity fact."""
    first = next(_sentences(_strip_start(_GREETING, text)), "")
    if not first or first.rstrip().endswith("?") or _NO_ANSWER.match(first):
        return None
    value = _strip_start(_ANSWER_LEAD, first)
    if re.search(r"\b(?:I|I'm|my|me)\b", value):
        return None
    return _slot(slot, value)


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


_ALL_USER_RULES = _USER_RULES + _MORE_USER_RULES
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
    version = "1"
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
        asked: tuple[str, int] | None = None
        for index, text in enumerate(turns):
            role = roles[index]
            if not text or role not in ("user", "agent"):
                continue
            ctx.turn = index
            sentences = list(_sentences(text))
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
                asked = (slot, index) if slot else None
                continue
            ctx.first_user_turn = index == first_user
            # The template (and its spec) an elided next item continues: "... And latex."
            listing: tuple[str, _Spec] | None = None
            for sentence in sentences:
                for clause in _clauses(sentence):
                    if _is_question(clause):
                        # "Can you note that my crown is loose?" asks, but also tells.
                        note = _NOTE_THAT.match(clause)
                        if note is None:
                            listing = None
                            continue
                        clause = note["x"]
                    clause = _strip_end(_CLAUSE_END, clause)
                    found_here = _match(clause, ctx)
                    if not found_here and listing is not None:
                        item = _listed_item(*listing, clause)
                        found_here = [item] if item else []
                    listing = None
                    if found_here:
                        stressed = bool(_STRESS.search(clause) or _EMPHASIS.search(sentence))
                        for found in found_here:
                            add(found, index, stressed)
                        last = found_here[-1]
                        listing = (last.continues, last.spec) if last.continues else None
            if asked is not None:
                answer = _answer(asked[0], text)
                if answer is not None:
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


_FIRST_WORD = re.compile(r"[a-z]+", re.IGNORECASE)


def _match(text: str, ctx: _Context) -> list[_Found]:
    """What the first user rule that matches ``text`` and accepts it makes of it."""
    first = _FIRST_WORD.match(text)
    rules = _RULES_BY_LEAD.get(first[0].lower(), _RULES_ANY_LEAD) if first else _RULES_ANY_LEAD
    for rule in rules:
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

    # A slot holds one value: when the caller corrects themselves, the last one said wins.
    latest: dict[str, _Hit] = {}
    for hit in merged.values():
        key = hit.found.key
        said = max(origins[hit.norm])
        if key is not None and (key not in latest or said >= max(origins[latest[key].norm])):
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
