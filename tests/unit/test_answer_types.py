"""What a question asks for (services/query/answer_types.py): the kind of answer, and
whether it asks what holds now."""

from __future__ import annotations

import pytest

from services.query.answer_types import answer_type, asks_current, holds_answer


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("When is the cleaning?", "moment"),
        ("What time does the dinner start?", "moment"),
        ("How old is Mango?", "number"),
        ("How many units of insulin does she take?", "number"),
        ("Who is being added as a driver?", "person"),
        ("Where should we mail the card?", "place"),
        ("Why did she call?", None),
        ("What internet plan is he on?", None),
    ],
)
def test_the_kind_of_answer_a_question_asks_for(question: str, kind: str | None) -> None:
    assert answer_type(question) == kind


def test_a_text_holds_an_answer_only_beyond_what_the_question_says() -> None:
    assert holds_answer("moment", "Friday works, at nine.", "When is the cleaning?")
    assert not holds_answer("moment", "Friday works.", "Is the cleaning on Friday?")
    assert holds_answer("number", "He's fourteen.", "How old is Mango?")
    assert holds_answer("person", "Sure, my son Ethan.", "Who is the new driver?")
    assert not holds_answer("person", "Yes, that's right.", "Who is the new driver?")


@pytest.mark.parametrize(
    "question",
    [
        "Which plan is Bea on now?",
        "What's his current dose?",
        "Is she still at the same address?",
        "What does he take these days?",
        "Where is she living at the moment?",
        "Does he drive anymore?",
        "What was the latest delivery date?",
        "What did she order most recently?",
        "NOW, what plan?",
    ],
)
def test_a_question_about_what_holds_now(question: str) -> None:
    assert asks_current(question)


@pytest.mark.parametrize(
    "question",
    [
        "Which plan was Bea on before?",
        "When did the bakery open?",
        "Who is her dentist?",
        "What did they know about it?",  # "now" only inside a word
        "Is there a snowstorm coming?",
    ],
)
def test_a_question_not_about_now(question: str) -> None:
    assert not asks_current(question)
