"""The rule-based extractor: golden transcripts, then targeted behaviour.

Golden files live in ``extraction_golden/``: ``<name>.transcript.json`` are small
hand-written calls (``{"turns": [{"role", "text"}...]}``) and ``<name>.expected.json``
the candidates expected from them, or from the platform payloads in
``ingest_payloads/``. ``UPDATE_GOLDEN=1`` rewrites the expected files from the current
extractor; every rewritten file must then be read by a human, memory by memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from projections.extraction.candidates import Candidate, Extractor, is_partial, normalise_content
from projections.extraction.rules import RuleExtractor
from schemas.events import Analysis, ConversationEndedData, Turn, TurnRole
from services.ingest.platforms import NormalisedWebhook, elevenlabs, retell, vapi

HERE = Path(__file__).parent
GOLDEN = HERE / "extraction_golden"
PAYLOADS = HERE / "ingest_payloads"
STARTED = datetime(2025, 10, 14, 9, 30, tzinfo=UTC)
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

Parser = Callable[..., NormalisedWebhook]
PLATFORM_PAYLOADS: dict[str, Parser] = {
    "elevenlabs_post_call_transcription": elevenlabs.parse_post_call,
    "vapi_end_of_call_report": vapi.parse_server_message,
    "retell_call_analyzed": retell.parse_webhook,
}
TRANSCRIPTS = sorted(path.name.split(".")[0] for path in GOLDEN.glob("*.transcript.json"))


def conversation(
    turns: list[tuple[TurnRole, str]], analysis: Analysis | None = None
) -> ConversationEndedData:
    """A finished call from ``(role, text)`` pairs, one second apart."""
    return ConversationEndedData(
        conversation_id="c",
        started_at=STARTED,
        status="done",
        turns=tuple(
            Turn(role=role, text=text, offset_ms=index * 1000)
            for index, (role, text) in enumerate(turns)
        ),
        analysis=analysis,
    )


def extract(turns: list[tuple[TurnRole, str]], analysis: Analysis | None = None) -> list[Candidate]:
    return list(RuleExtractor().extract(conversation(turns, analysis)).candidates)


def contents(candidates: list[Candidate]) -> list[str]:
    return [candidate.content for candidate in candidates]


def from_platform(name: str) -> ConversationEndedData:
    body = json.loads((PAYLOADS / f"{name}.json").read_text())
    parsed = PLATFORM_PAYLOADS[name]("t", body, received_at=datetime.now(UTC))
    data = parsed.events[0].data
    assert isinstance(data, ConversationEndedData)
    return data


def from_transcript(name: str) -> ConversationEndedData:
    turns = json.loads((GOLDEN / f"{name}.transcript.json").read_text())["turns"]
    return conversation([(turn["role"], turn["text"]) for turn in turns])


def as_json(candidates: list[Candidate]) -> list[dict[str, Any]]:
    return [
        {
            "content": c.content,
            "sector": c.sector,
            "kind": c.kind,
            "key": c.key,
            "salience": c.salience,
            "turns": list(c.turns),
        }
        for c in candidates
    ]


def check_golden(name: str, source: str, data: ConversationEndedData) -> None:
    path = GOLDEN / f"{name}.expected.json"
    actual = as_json(list(RuleExtractor().extract(data).candidates))
    if UPDATE:
        document = {"source": source, "candidates": actual}
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    expected = json.loads(path.read_text())["candidates"]
    assert actual == expected


# ------------------------------------------------------------------------- goldens


@pytest.mark.parametrize("name", sorted(PLATFORM_PAYLOADS))
def test_platform_payload_golden(name: str) -> None:
    check_golden(name, f"ingest_payloads/{name}.json", from_platform(name))


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_transcript_golden(name: str) -> None:
    check_golden(name, f"{name}.transcript.json", from_transcript(name))


def test_there_are_enough_golden_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 5


@pytest.mark.parametrize("name", sorted(PLATFORM_PAYLOADS) + TRANSCRIPTS)
def test_golden_contents_are_well_formed(name: str) -> None:
    data = from_platform(name) if name in PLATFORM_PAYLOADS else from_transcript(name)
    for candidate in RuleExtractor().extract(data).candidates:
        text = candidate.content
        assert 3 <= len(text) <= 200
        assert text[0].isupper() or text[0].isdigit(), text
        assert not text.endswith((".", ",", ";", ":")), text
        assert " I " not in f" {text} " and " my " not in f" {text.lower()} ", text
        assert all(0 <= t < len(data.turns) for t in candidate.turns)


# --------------------------------------------------------------------- behaviour


def test_is_an_extractor_with_a_name_and_version() -> None:
    extractor = RuleExtractor()
    assert isinstance(extractor, Extractor)
    assert (extractor.name, extractor.version) == ("rules", "2")
    extraction = extractor.extract(from_transcript("moved_city"))
    assert (extraction.extractor, extraction.extractor_version) == ("rules", "2")


def test_first_person_is_rewritten_in_the_third() -> None:
    found = extract(
        [
            ("user", "I'm allergic to penicillin."),
            ("user", "I need to pick up my daughter from school next Friday."),
            ("user", "I usually brush my teeth after lunch."),
        ]
    )
    assert contents(found) == [
        "Allergic to penicillin",
        "Needs to pick up their daughter from school next Friday",
        "Usually brushes their teeth after lunch",
    ]


def test_contractions_fillers_and_casing_are_handled() -> None:
    found = extract(
        [
            ("user", "um so yeah I- I'm, like, really allergic to latex you know"),
            ("user", "I DON'T like the taste of fluoride."),
            ("user", "I've decided to get a night guard."),
        ]
    )
    assert contents(found) == [
        "Allergic to latex",
        "Dislikes the taste of fluoride",
        "Decided to get a night guard",
    ]
    assert found[0].salience == 0.95  # "really" stresses it


def test_nothing_comes_from_the_callers_questions() -> None:
    found = extract(
        [
            ("user", "Do you have availability next Tuesday?"),
            ("user", "Can I book a cleaning for Thursday afternoon?"),
            ("user", "Is it normal that my gums bleed when I floss?"),
            ("user", "I'm allergic to latex, is that a problem?"),
        ]
    )
    assert contents(found) == ["Allergic to latex"]


def test_greetings_thanks_and_yes_no_give_nothing() -> None:
    found = extract(
        [
            ("agent", "Hi, this is Ava from Bayview Dental. How can I help?"),
            ("user", "Hi Ava! Yes. No. Okay, great, thank you so much."),
            ("user", "That's all, thanks. Have a good day, bye."),
            ("user", "I'm good, thanks. I'll hold. I'm so glad to hear that."),
        ]
    )
    assert found == []


def test_a_memory_said_twice_is_one_candidate_with_both_turns() -> None:
    found = extract(
        [
            ("user", "I'm allergic to penicillin."),
            ("agent", "Thanks, noted."),
            ("user", "Sorry, just to be sure: I am allergic to Penicillin!"),
        ]
    )
    assert len(found) == 1
    assert found[0].turns == (0, 2)
    assert found[0].salience == 0.95  # repeated in another turn
    assert len({normalise_content(c.content) for c in found}) == len(found)


def test_turn_indices_point_at_the_turns_that_said_it() -> None:
    found = extract(
        [
            ("system", "You are Ava."),
            ("agent", "Hello!"),
            ("tool", ""),
            ("user", "Hi. I live in Portland. I'm a nurse."),
            ("agent", "Got it."),
            ("user", "Mornings work best for me."),
        ]
    )
    assert [(c.content, c.turns) for c in found] == [
        ("Lives in Portland", (3,)),
        ("Is a nurse", (3,)),
        ("Prefers mornings", (5,)),
    ]


def test_extraction_is_deterministic() -> None:
    data = from_transcript("allergy_anxiety")
    first = RuleExtractor().extract(data)
    assert all(RuleExtractor().extract(data) == first for _ in range(5))
    assert [asdict(c) for c in first.candidates] == [
        asdict(c) for c in RuleExtractor().extract(data).candidates
    ]


def test_an_agent_booking_confirmation_is_a_memory_about_the_caller() -> None:
    found = extract([("agent", "Your cleaning appointment is booked for Tuesday at 3pm.")])
    assert [(c.content, c.sector, c.kind, c.salience) for c in found] == [
        ("Has a cleaning appointment booked for Tuesday at 3pm", "episodic", "event", 0.7)
    ]


def test_agent_offers_questions_and_failures_are_no_bookings() -> None:
    found = extract(
        [
            ("agent", "Would you like me to book you for Thursday at 2?"),
            ("agent", "I can book you for Friday at 10 if you like."),
            ("agent", "Unfortunately I couldn't book you for Monday, that slot is gone."),
            ("agent", "Once you're booked for Tuesday, you'll get a text."),
        ]
    )
    assert found == []


def test_reschedules_and_cancellations_take_the_appointment_type_from_context() -> None:
    found = extract(
        [
            ("user", "Hi, I need to move my filling on Monday."),
            ("agent", "Sure. I've moved it to Wednesday at 4:30."),
            ("user", "And please cancel my whitening consultation."),
            ("agent", "Done, your whitening consultation has been cancelled."),
        ]
    )
    assert [(c.content, c.turns) for c in found] == [
        ("Rescheduled their filling to Wednesday at 4:30", (0, 1)),
        ("Cancelled their whitening consultation", (3,)),
    ]


def test_what_the_agent_noted_about_the_caller_is_a_memory() -> None:
    found = extract(
        [
            (
                "agent",
                "Okay, I've made a note that you're allergic to codeine "
                "and that your daughter Emma needs a checkup.",
            ),
            ("agent", "Of course, I've noted that for Dr. Patel."),
        ]
    )
    assert [(c.content, c.turns) for c in found] == [
        ("Allergic to codeine", (0,)),
        ("Daughter Emma needs a checkup", (0,)),
    ]


def test_an_appointment_the_caller_mentions_gives_way_to_the_agents_change() -> None:
    found = extract(
        [
            ("user", "I have a check-up on Monday at 9 but I can't make it."),
            ("agent", "No problem, I've moved your check-up to Thursday at 1:15 PM."),
        ]
    )
    assert [(c.content, c.turns) for c in found] == [
        ("Rescheduled their check-up to Thursday at 1:15 PM", (0, 1))
    ]


def test_a_request_fulfilled_in_the_call_is_folded_into_the_confirmation() -> None:
    fulfilled = extract(
        [
            ("user", "I'd like to cancel my appointment on Friday."),
            ("agent", "I've cancelled your Friday appointment."),
        ]
    )
    assert [(c.content, c.turns) for c in fulfilled] == [
        ("Cancelled their Friday appointment", (0, 1))
    ]
    open_request = extract(
        [
            ("user", "I'd like to cancel my appointment on Friday."),
            ("agent", "I'm sorry, our system is down, could you call back later?"),
        ]
    )
    assert contents(open_request) == ["Wants to cancel their appointment on Friday"]


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        (
            "Can you confirm your date of birth for me?",
            "March third, 1988.",
            "Date of birth: March third, 1988",
        ),
        ("Can I get your full name?", "Sure, it's um, Robert Kim.", "Name: Robert Kim"),
        ("What's your email address?", "rob dot kim at gmail dot com", "Email: rob.kim@gmail.com"),
        (
            "What's the best number to reach you?",
            "It's 415 555 0123.",
            "Phone number: 415 555 0123",
        ),
        ("What's your home address?", "12 Oak Street, Fremont.", "Address: 12 Oak Street, Fremont"),
        ("And what city do you live in?", "Oakland.", "Lives in Oakland"),
        ("Who is your insurance provider?", "Delta Dental.", "Insurance: Delta Dental"),
    ],
)
def test_an_answer_to_a_slot_question_is_an_identity_fact(
    question: str, answer: str, expected: str
) -> None:
    found = extract([("agent", "Of course. " + question), ("tool", ""), ("user", answer)])
    assert [(c.content, c.turns) for c in found] == [(expected, (0, 2))]
    assert found[0].salience >= 0.7


@pytest.mark.parametrize(
    "answer",
    ["Sorry, what was that?", "Why do you need it?", "I'm not sure.", "Hold on.", "No."],
)
def test_a_non_answer_to_a_slot_question_gives_nothing(answer: str) -> None:
    assert extract([("agent", "Can you confirm your date of birth?"), ("user", answer)]) == []


def test_identity_patterns_set_slot_keys() -> None:
    found = extract(
        [
            ("user", "Hi, this is Maria Lopez. You can call me Mia."),
            ("user", "This is really important."),
            ("user", "I just moved to Denver from Austin. I work at Kaiser."),
        ]
    )
    assert [(c.content, c.kind, c.key) for c in found] == [
        ("Name: Maria Lopez", "identity", "name"),
        ("Prefers to be called Mia", "identity", "preferred_name"),
        ("Recently moved to Denver", "fact", "home_city"),
        ("Previously lived in Austin", "fact", None),
        ("Works at Kaiser", "fact", "employer"),
    ]


def test_a_slot_keeps_the_last_value_said() -> None:
    found = extract([("user", "I live in Austin."), ("user", "Sorry, I mean I live in Dallas.")])
    assert [(c.content, c.key) for c in found] == [("Lives in Dallas", "home_city")]


@pytest.mark.parametrize(
    ("said", "content", "sector", "kind", "salience"),
    [
        ("I'm allergic to penicillin", "Allergic to penicillin", "semantic", "fact", 0.9),
        ("I have type 2 diabetes", "Has type 2 diabetes", "semantic", "fact", 0.9),
        ("My name is Ana Silva", "Name: Ana Silva", "semantic", "identity", 0.8),
        ("I live in Sacramento", "Lives in Sacramento", "semantic", "fact", 0.7),
        ("My daughter Emma is six", "Daughter Emma is six", "semantic", "fact", 0.7),
        (
            "I prefer morning appointments",
            "Prefers morning appointments",
            "semantic",
            "preference",
            0.6,
        ),
        (
            "I hate the sound of the drill",
            "Hates the sound of the drill",
            "semantic",
            "preference",
            0.6,
        ),
        (
            "I'm planning to get braces next year",
            "Planning to get braces next year",
            "episodic",
            "plan",
            0.6,
        ),
        ("My back tooth is cracked", "Back tooth is cracked", "episodic", "problem", 0.6),
        (
            "I have a problem with my retainer",
            "Has a problem with their retainer",
            "episodic",
            "problem",
            0.6,
        ),
        (
            "I'm nervous about the extraction",
            "Nervous about the extraction",
            "emotional",
            "feeling",
            0.5,
        ),
        ("I floss every night", "Flosses every night", "procedural", "habit", 0.5),
        (
            "Please text me rather than call",
            "Prefers texts to calls",
            "procedural",
            "preference",
            0.6,
        ),
        ("Please email me the forms", "", "", "", 0.0),
        (
            "Please call my cell",
            "Prefers to be called on their cell",
            "procedural",
            "preference",
            0.6,
        ),
        (
            "I realised I need to floss more",
            "Realised they need to floss more",
            "reflective",
            "fact",
            0.6,
        ),
        (
            "I've decided to get the implant",
            "Decided to get the implant",
            "reflective",
            "plan",
            0.6,
        ),
        ("I had a root canal last year", "Had a root canal last year", "episodic", "event", 0.7),
    ],
)
def test_sectors_kinds_and_salience(
    said: str, content: str, sector: str, kind: str, salience: float
) -> None:
    found = extract([("user", said)])
    if not content:
        assert found == []
        return
    assert [(c.content, c.sector, c.kind, c.salience) for c in found] == [
        (content, sector, kind, salience)
    ]


def test_an_elided_list_item_continues_the_list() -> None:
    found = extract([("user", "I'm allergic to penicillin. And latex. Thanks.")])
    assert contents(found) == ["Allergic to penicillin", "Allergic to latex"]


def test_it_is_resolved_to_what_the_caller_said_was_wrong() -> None:
    found = extract([("user", "My crown feels loose and it hurts when I chew.")])
    assert contents(found) == ["Crown feels loose", "Crown hurts when they chew"]
    assert extract([("user", "It hurts when I chew.")]) == []


def test_data_collected_fills_slots_the_transcript_left_empty() -> None:
    analysis = Analysis(
        data_collected={
            "caller_name": "Jane Doe",
            "Email Address": {"value": "jane@example.com", "rationale": "said so"},
            "date_of_birth": "1990-01-02",
            "preferred_day": "Thursday",
            "appointment_booked": True,
        }
    )
    found = extract(
        [("user", "Hi, my date of birth is January 2nd 1990."), ("agent", "Thanks!")], analysis
    )
    assert [(c.content, c.key, c.turns) for c in found] == [
        ("Date of birth: January 2nd 1990", "date_of_birth", (0,)),
        ("Email: jane@example.com", "email", (0,)),
        ("Name: Jane Doe", "name", (0,)),
    ]
    only_agent = extract([("agent", "Hello?")], Analysis(data_collected={"name": "Jane"}))
    assert [(c.content, c.turns) for c in only_agent] == [("Name: Jane", (0,))]


def test_no_memory_is_longer_than_200_characters() -> None:
    rambling = "I want to " + " and then ".join(["go to the store"] * 30)
    assert extract([("user", rambling)]) == []


# ------------------------------------------------- accounts, health, money, travel, people


@pytest.mark.parametrize(
    ("said", "content", "sector", "kind", "key"),
    [
        # plans, as requests
        (
            "Switch me to the unlimited plan.",
            "Wants to switch to the unlimited plan",
            "episodic",
            "plan",
            "plan",
        ),
        (
            "Um, can you move me to the fifty dollar plan?",
            "Wants to switch to the fifty dollar plan",
            "episodic",
            "plan",
            "plan",
        ),
        (
            "I want to upgrade to premium.",
            "Wants to upgrade to premium",
            "episodic",
            "plan",
            "plan",
        ),
        ("I'm on the basic plan.", "Is on the basic plan", "semantic", "fact", "plan"),
        # contact preferences, as commands
        (
            "Text me, don't call.",
            "Prefers texts to calls",
            "procedural",
            "preference",
            "contact_method",
        ),
        (
            "Could you just email me instead?",
            "Prefers emails to calls",
            "procedural",
            "preference",
            "contact_method",
        ),
        ("Email me from now on.", "Prefers emails", "procedural", "preference", "contact_method"),
        (
            "Please don't call me before 9am.",
            "Prefers not to be called before 9am",
            "procedural",
            "preference",
            "contact_time",
        ),
        (
            "For outages, call my cell, not the house phone.",
            "Prefers to be called on their cell, not the house phone",
            "procedural",
            "preference",
            "contact_method",
        ),
        # people
        (
            "My wife Linda and I are planning a trip.",
            "Has a wife named Linda",
            "semantic",
            "fact",
            None,
        ),
        ("My grandson's name is Eli.", "Has a grandson named Eli", "semantic", "fact", None),
        # medication and doses, a slot per drug
        (
            "They upped my metformin to a thousand milligrams.",
            "Metformin dose increased to a thousand milligrams",
            "semantic",
            "fact",
            "medication_metformin",
        ),
        (
            "I take lisinopril 10 milligrams every morning.",
            "Takes lisinopril 10 milligrams every morning",
            "semantic",
            "fact",
            "medication_lisinopril",
        ),
        (
            "I stopped taking lisinopril.",
            "Stopped taking lisinopril",
            "semantic",
            "fact",
            "medication_lisinopril",
        ),
        # delivery addresses
        (
            "Ship it to 42 Elm Street.",
            "Delivery address: 42 Elm Street",
            "semantic",
            "identity",
            "delivery_address",
        ),
        (
            "Can you send it to my sister's place at 18 Oak Lane?",
            "Delivery address: their sister's place at 18 Oak Lane",
            "semantic",
            "identity",
            "delivery_address",
        ),
        # savings and amounts
        (
            "I'm trying to save like twenty grand for a down payment.",
            "Trying to save about twenty grand for a down payment",
            "reflective",
            "plan",
            "savings_goal",
        ),
        (
            "My rent is sixteen hundred dollars a month.",
            "Rent is sixteen hundred dollars a month",
            "semantic",
            "fact",
            "rent",
        ),
        # seats and diet
        ("Aisle seat, please.", "Prefers an aisle seat", "semantic", "preference", "seat"),
        ("Could I get a window seat?", "Prefers a window seat", "semantic", "preference", "seat"),
        ("I'm vegetarian.", "Is vegetarian", "semantic", "preference", "diet"),
        ("No shellfish.", "Avoids shellfish", "semantic", "preference", None),
        ("I don't eat pork.", "Does not eat pork", "semantic", "preference", None),
        # fraud
        (
            "There's a charge I didn't make from some store in Ohio.",
            "Reported a charge they didn't make from some store in Ohio",
            "episodic",
            "problem",
            None,
        ),
        (
            "Someone used my card at a gas station in Texas.",
            "Someone used their card at a gas station in Texas",
            "episodic",
            "problem",
            None,
        ),
        # pets
        ("My dog Max has diabetes.", "Dog Max has diabetes", "semantic", "fact", None),
        ("We have a cat named Luna.", "Has a cat named Luna", "semantic", "fact", None),
    ],
)
def test_accounts_health_money_travel_and_people(
    said: str, content: str, sector: str, kind: str, key: str | None
) -> None:
    found = extract([("user", said)])
    assert [(c.content, c.sector, c.kind, c.key) for c in found] == [(content, sector, kind, key)]


def test_fraud_is_more_salient_than_other_problems() -> None:
    [fraud] = extract([("user", "I don't recognize this charge from Amazon.")])
    [problem] = extract([("user", "My back tooth is cracked.")])
    assert fraud.salience == 0.7 > problem.salience


def test_a_trip_with_its_date_and_budget() -> None:
    found = extract([("user", "we're thinking Lisbon in October, budget around three thousand")])
    assert [(c.content, c.kind, c.key) for c in found] == [
        ("Planning a trip to Lisbon in October", "plan", "trip"),
        ("Budget is around three thousand", "preference", "budget"),
    ]


def test_she_his_and_a_name_are_the_person_the_caller_spoke_of() -> None:
    found = extract(
        [
            ("user", "My mom has dementia. Her caregiver, Rosa, picks up her prescriptions."),
            ("agent", "Okay."),
            ("user", "She lives with us now."),
            ("user", "I have a dog named Biscuit. He has hip dysplasia. Biscuit is fourteen."),
            ("user", "I have a grandson. His name is Eli."),
        ]
    )
    assert contents(found) == [
        "Mom has dementia",
        "Mom's caregiver Rosa picks up her prescriptions",
        "Mom lives with them now",
        "Has a dog named Biscuit",
        "Dog Biscuit has hip dysplasia",
        "Dog Biscuit is fourteen",
        "Has a grandson",
        "Has a grandson named Eli",
    ]
    # Without anyone spoken of, "she" is nobody.
    assert extract([("user", "She lives with us now.")]) == []


def test_calling_for_someone_makes_them_she_or_he_all_call_long() -> None:
    found = extract(
        [
            ("user", "Hi, this is Karen, I'm calling for my dad, Robert Kowalski."),
            ("agent", "Sure, what do you need?"),
            ("user", "He's moving in with us this weekend."),
            ("agent", "Okay. Anything else?"),
            ("user", "Let me think."),
            ("agent", "Take your time."),
            ("user", "Oh, and he's allergic to sulfa."),
        ]
    )
    assert "Dad Robert is allergic to sulfa" in contents(found)


def test_answers_to_the_agents_questions_about_someone_else() -> None:
    found = extract(
        [
            ("user", "My husband has to drive me."),
            ("agent", "What's his name, in case he calls for you?"),
            ("user", "Arjun. Arjun Raman. He can talk to you about my appointments."),
            ("agent", "What's your son's name?"),
            ("user", "Malik."),
            ("agent", "Is his allergy still just peanuts?"),
            ("user", "Peanuts and, um, tree nuts too."),
        ]
    )
    assert contents(found)[1:] == [
        "Has a husband named Arjun Raman",
        "Has a son named Malik",
        "Son Malik is allergic to peanuts and tree nuts",
    ]


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        ("Do you have any allergies?", "Uh, yeah, penicillin.", "Allergic to penicillin"),
        (
            "And what kind of budget are we working with?",
            "Um, about fourteen thousand dollars.",
            "Budget is about fourteen thousand dollars",
        ),
        (
            "Great goal! How much are you aiming for?",
            "Eighteen thousand? By June of next year.",
            "Savings goal is eighteen thousand by June of next year",
        ),
    ],
)
def test_an_answer_to_an_allergy_or_amount_question(
    question: str, answer: str, expected: str
) -> None:
    found = extract([("agent", question), ("user", answer)])
    assert [(c.content, c.turns) for c in found] == [(expected, (0, 1))]


def test_agent_confirmations_of_plans_slots_values_and_reference_numbers() -> None:
    switched = extract(
        [
            ("user", "Switch me to the unlimited plan."),
            ("agent", "Done! I've switched you to the unlimited plan."),
        ]
    )
    assert [(c.content, c.key, c.turns) for c in switched] == [
        ("Switched to the unlimited plan", "plan", (0, 1))
    ]
    found = extract(
        [
            ("agent", "I have Thursday the twelfth at ten thirty, or Friday at two."),
            ("user", "Thursday works."),
            ("agent", "Okay, Thursday the twelfth at ten thirty with Dr. Patel."),
            ("user", "Can we bump the transfer up to seven fifty a month?"),
            ("agent", "Sure, I've updated the automatic transfer to seven fifty a month."),
            ("agent", "Your claim number is F two two nine zero eight."),
        ]
    )
    assert [(c.content, c.key) for c in found] == [
        ("Has an appointment booked for Thursday the twelfth at ten thirty with Dr. Patel", None),
        ("Automatic transfer changed to seven fifty a month", "transfer"),
        ("Claim number is F two two nine zero eight", "claim_number"),
    ]


def test_an_address_said_anywhere_in_words_is_kept() -> None:
    found = extract(
        [("user", "No, no, I moved in with my daughter. It's eleven eighty Birchwood Lane now.")]
    )
    assert [(c.content, c.key) for c in found] == [
        ("Address: eleven eighty Birchwood Lane", "address")
    ]


@pytest.mark.parametrize(
    ("said", "content"),
    [
        ("My appointment is on the 14th, no wait, the 15th.", "Appointment is on the 15th"),
        ("I live at 42, no, 44 Elm Street.", "Lives at 44 Elm Street"),
        (
            "We're thinking Lisbon, no wait, Porto in October.",
            "Planning a trip to Porto in October",
        ),
        ("My name is Jon, sorry, John Smith.", "Name: John Smith"),
        (
            "My rent is fifteen, no, sixteen hundred dollars a month.",
            "Rent is sixteen hundred dollars a month",
        ),
    ],
)
def test_a_self_correction_keeps_only_the_corrected_value(said: str, content: str) -> None:
    assert contents(extract([("user", said)])) == [content]


@pytest.mark.parametrize(
    ("said", "content"),
    [
        (
            "I need to pay twenty five hundred dollars by Friday.",
            "Needs to pay twenty five hundred dollars by Friday",
        ),
        ("My budget is twenty twenty five.", "Budget is twenty twenty five"),
        (
            "My number is five five five, one two three four, five six seven.",
            "Phone number: five five five, one two three four, five six seven",
        ),
        (
            "My shipping address is forty two Elm Street, Springfield.",
            "Delivery address: forty two Elm Street, Springfield",
        ),
        ("The gate code is four four seven one.", "Gate code is four four seven one"),
        ("I like 2 sugars in my coffee.", "Likes 2 sugars in their coffee"),
    ],
)
def test_numbers_said_in_words_are_kept_as_said(said: str, content: str) -> None:
    assert contents(extract([("user", said)])) == [content]


@pytest.mark.parametrize(
    "turns",
    [
        [("user", "What plan am I on?")],
        [("user", "How much is the unlimited plan?")],
        [("user", "Do you have an aisle seat?")],
        [("user", "Is there a vegetarian option?")],
        [("user", "Can you tell me my balance?")],
        [("user", "Could you check if my card was charged twice?")],
        [("user", "I'm walking down the aisle in June!")],
        [("user", "The window was open all night.")],
        [
            ("agent", "Would you like me to switch you to the unlimited plan?"),
            ("user", "Maybe later."),
        ],
        [("agent", "I can ship it to 42 Elm Street if you like."), ("user", "Hmm.")],
        [("agent", "We have a vegetarian meal option and aisle seats."), ("user", "Okay.")],
        [("agent", "Once you're on the premium plan, you'll get more data."), ("user", "Right.")],
        [("agent", "Would Thursday at ten work?"), ("user", "Let me check.")],
    ],
)
def test_questions_and_the_agents_offers_are_not_the_callers_facts(
    turns: list[tuple[TurnRole, str]],
) -> None:
    assert extract(turns) == []


def test_a_partial_value_never_replaces_a_fuller_one_in_a_call() -> None:
    found = extract(
        [
            ("user", "Hi, my name is Maria Lopez."),
            ("agent", "Thanks! Can I get your name for the booking?"),
            ("user", "It's Maria."),
        ]
    )
    assert [(c.content, c.key, c.turns) for c in found] == [
        ("Name: Maria Lopez", "name", (0, 1, 2))
    ]
    corrected = extract([("user", "My name is Maria."), ("user", "Sorry, my name is Maria Lopez.")])
    assert [(c.content, c.turns) for c in corrected] == [("Name: Maria Lopez", (0, 1))]


@pytest.mark.parametrize(
    ("new", "old", "partial"),
    [
        ("Name: Maria", "Name: Maria Lopez", True),
        ("Name: Lopez", "Name: Maria Lopez", True),
        ("Name: Maria Lopez", "Name: Maria", False),
        ("Name: Mario", "Name: Maria Lopez", False),
        ("Address: 12 Oak Street", "Address: 12 Oak Street, Fremont", True),
        ("Takes metformin", "Takes metformin 500 mg", True),
        ("Prefers calls", "Prefers texts to calls", False),
        ("Budget is twenty", "Budget is twenty five hundred dollars", False),
        ("Lives in Austin", "Lives in Austin", False),
    ],
)
def test_is_partial(new: str, old: str, partial: bool) -> None:
    assert is_partial(new, old) is partial
