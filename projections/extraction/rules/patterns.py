"""The patterns of everyday life: what callers say about themselves.

Health (allergies, conditions, medication), identity, family, work, home, feelings,
problems, habits, plans and preferences: the regular-expression building blocks and
vocabulary, the builders, and the rule tables ``_USER_RULES`` and ``_MORE_USER_RULES``.
A relative the caller speaks of is remembered (``_meet``) for a later "she" or "his"
(``people``).
"""

from __future__ import annotations

import re
from typing import Any

from projections.extraction.rules.normalise import (
    _HAS_NUMBER,
    _MONTHS,
    _WEEKDAYS,
    _capitalise,
    _lower_first,
    _phrase,
    _third_person,
    _trim,
    _verb_phrase,
    _words,
)
from projections.extraction.rules.rule import (
    EVENT,
    FEELING,
    GOAL,
    HABIT,
    HEALTH,
    IDENTITY,
    INSIGHT,
    LIFE,
    MANNER,
    PLAN,
    PREFERENCE,
    PROBLEM,
    _Build,
    _BuildOne,
    _Context,
    _Found,
    _Rule,
    _rule,
    _Spec,
)
from projections.extraction.rules.slots import (
    _DIGIT,
    _first_turn_name,
    _fmt,
    _name,
    _slot,
    _slot_rule,
)

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

# Whom the caller spoke of, for a later "she" or "his" (read in ``people``).
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


def _gender(rel: str) -> str:
    rel = rel.lower()
    return "she" if rel in _FEMALE else "he" if rel in _MALE else "any"


def _meet(ctx: _Context, rel: str, name: str | None) -> None:
    """Remember who the caller just spoke of, for a later "she", "his" or "Max"."""
    label = _capitalise(rel.lower()) + (f" {name}" if name else "")
    ctx.last_person = (label, _gender(rel), ctx.turn, "" if name else rel.lower())
    if name:
        ctx.people[name] = label


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
