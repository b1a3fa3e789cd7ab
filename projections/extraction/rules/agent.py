"""The agent's turns: context for the caller's memories.

Booking, rescheduling and cancellation confirmations (also a slot read back: "Okay,
Friday the thirtieth at eight thirty"), plan switches ("I've upgraded you to Skyline
Gig"), changed values ("I've updated the automatic transfer to seven fifty a month")
and reference numbers ("Your claim number is...") become memories of the caller, what
the agent says it noted ("I've noted that you prefer mornings") is read as the caller
saying it, and an agent question for a common slot (name, date of birth, email,
address, city, phone, insurance, member id) turns the caller's next answer into an
identity fact; questions about someone else's name ("What's his name?"), allergies, an
amount ("How much are you aiming for?") or a party's size read the answer the same way.
Simple string values of the platform's ``analysis.data_collected`` fill the same slots
when the transcript left them empty. What the agent offers is no fact of the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from projections.extraction.rules.domains import (
    _HAS_DAY,
    _NOT_PLAN,
    _PLAN_WORD,
    _READBACK,
    _booking,
    _context_appointment,
    _match,
    _value_key,
)
from projections.extraction.rules.normalise import (
    _CLAUSE_END,
    _GREETING,
    _HAS_NUMBER,
    _LEADING,
    _NON_WORD,
    _NUMBER,
    _about_caller,
    _capitalise,
    _clauses,
    _lower_first,
    _phrase,
    _sentences,
    _strip_end,
    _strip_start,
    _trim,
)
from projections.extraction.rules.patterns import (
    _APPOINTMENT,
    _APPOINTMENT_WORD,
    _FOR_WHAT,
    _KIN,
    _PRONOUN_OBJECT,
    _TIME,
    _article,
    _booked_for,
    _meet,
)
from projections.extraction.rules.people import (
    _NOT_A_NAME,
)
from projections.extraction.rules.rule import (
    EVENT,
    GOAL,
    HEALTH,
    LIFE,
    PREFERENCE,
    _Context,
    _Found,
)
from projections.extraction.rules.slots import (
    _name,
    _slot,
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


def _agent_readback(clause: str, ctx: _Context) -> _Found | None:
    """ "Okay, Friday the thirtieth at eight thirty in the morning.": a slot read back."""
    match = _READBACK.match(clause)
    return _booking(match["when"], match["rest"], ctx) if match else None


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
