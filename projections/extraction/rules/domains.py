"""What callers of service lines say, and which rule reads a clause.

Plan and subscription changes ("switch me to the unlimited plan"), how to be contacted
("text me, don't call"), medication and doses, a slot per drug ("they upped my
metformin to a thousand milligrams"), delivery, savings goals and amounts, trips with
dates and budgets, seats and diet, fraud and disputed charges, values that change,
codes, dates of events ("the conference is May fourth") and a slot the agent offered,
taken by the caller; their rule tables ``_MEDICATION_RULES``, ``_REQUEST_RULES`` and
``_MORE_DOMAIN_RULES``.

A request asked as a question ("can you move me to the fifty dollar plan?") is read by
the request rules only, as if said outright (``_requested``). Every caller rule, these
first, then those of ``patterns``, is indexed here by a clause's first word, and
``_match`` is what the first rule that matches a clause and accepts it makes of it:
here, because a rule of these tables (``_reported``: "my doctor said I...") reads what
was reported with every rule again.
"""

from __future__ import annotations

import re
from dataclasses import replace

from projections.extraction.rules.normalise import (
    _AND_VERB,
    _CLAUSE_END,
    _HAS_NUMBER,
    _MONTHS,
    _NON_WORD,
    _NUMBER,
    _WEEKDAYS,
    _about_caller,
    _capitalise,
    _lower_first,
    _phrase,
    _strip_end,
    _third_person,
    _third_singular,
    _trim,
    _words,
)
from projections.extraction.rules.patterns import (
    _APPOINTMENT_WORD,
    _CONTACT,
    _CONTACTED,
    _KIN,
    _MORE_USER_RULES,
    _PETS,
    _PREFERRED_TIME,
    _PRONOUN_OBJECT,
    _SPECIFIC_APPOINTMENT,
    _TIME,
    _USER_RULES,
    _VAGUE_OBJECT,
    _VAGUE_PLAN,
    ADV,
    I_AM,
    I_HAVE,
    _article,
    _booked_for,
    _plan,
    _relative_says,
    _text_me,
)
from projections.extraction.rules.people import (
    _NOT_A_NAME,
    _adopted,
    _name_is_relative,
    _named_diet,
    _named_says,
    _pronoun_is_relative,
    _pronoun_name,
    _pronoun_says,
    _their_relative_is,
    _their_relative_says,
)
from projections.extraction.rules.rule import (
    EVENT,
    GOAL,
    HABIT,
    HEALTH,
    IDENTITY,
    LIFE,
    MANNER,
    PLAN,
    PREFERENCE,
    _BuildOne,
    _Context,
    _Found,
    _Rule,
    _rule,
    _Spec,
)
from projections.extraction.rules.slots import (
    _DIGIT,
    _PLACE_WORD,
    _fmt,
    _slot,
)

# -------------------------------------- accounts, health, money, travel, plans, contact

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


# -- delivery

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


def _reported(match: re.Match[str], ctx: _Context) -> list[_Found] | None:
    return _match(match["x"], ctx) or None


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


def _context_appointment(ctx: _Context) -> tuple[str | None, tuple[int, ...]]:
    """The most recent specific appointment type mentioned ("cleaning"), and where."""
    for index in range(ctx.turn, -1, -1):
        if ctx.roles[index] not in ("user", "agent"):
            continue
        found = _SPECIFIC_APPOINTMENT.findall(ctx.turns[index])
        if found:
            return found[-1].lower(), (() if index == ctx.turn else (index,))
    return None, ()


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


# -------------------------------------- every caller rule, and which one reads a clause

_ALL_USER_RULES = _DOMAIN_RULES + _USER_RULES + _MORE_USER_RULES
# The rules worth trying for a clause, by its first word (in priority order).
_LEADS = frozenset(rule.lead for rule in _ALL_USER_RULES if rule.lead is not None)
_RULES_BY_LEAD = {
    lead: tuple(rule for rule in _ALL_USER_RULES if rule.lead in (lead, None)) for lead in _LEADS
}
_RULES_ANY_LEAD = tuple(rule for rule in _ALL_USER_RULES if rule.lead is None)


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
