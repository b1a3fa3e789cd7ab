"""Text normalisation: a turn's text made readable, cut into clauses, said of the caller.

Spoken English: fillers ("um", "uh", ", like,", "you know") and stutters go, "like"
before an amount means "about" ("save like twenty grand" -> "save about twenty
grand"), a self-correction keeps the corrected value only ("the 14th, no wait, the
15th" -> "the 15th"), and numbers said in words stay as said ("twenty five hundred
dollars"; "five five five" is no stutter).

Content is rewritten in the third person about the caller, without a subject
("I'm allergic to penicillin" -> "Allergic to penicillin", "my" -> "their"); the
agent's "your" is the caller's too, and a verb said of the caller is conjugated
("brush and floss" -> "brushes and flosses").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

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


_NON_WORD = re.compile(r"[^a-z0-9]+")
