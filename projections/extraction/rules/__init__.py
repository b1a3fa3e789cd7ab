"""The rule-based extractor: English patterns over a transcript, no model, no network.

:class:`RuleExtractor` is the default extractor when no LLM is configured. It reads
the caller's turns (role ``user``) clause by clause and matches them against
precompiled patterns; the agent's turns are context (``agent``).

Besides health, identity, family, work, home, feelings, problems, habits, plans and
preferences, the rules know what callers of service lines say: plan and subscription
changes ("switch me to the unlimited plan"), how to be contacted ("text me, don't
call"), people and pets by name ("my wife Linda", "her caregiver, Rosa, picks up"; a
later "she", "his name" or "Max" means them), medication and doses, a slot per drug
("they upped my metformin to a thousand milligrams"), delivery and street addresses,
savings goals and amounts, trips with dates and budgets, seats and diet, fraud and
disputed charges, codes, and dates of events ("the conference is May fourth").

The package, by concern (each module imports only those above it):

- ``rule``: what a rule is and what it yields; sectors and salience of each family;
- ``normalise``: spoken English made readable (fillers, stutters, self-corrections,
  numbers said in words), sentences and clauses, the third person;
- ``slots``: builders: a template filled with the capture, a common slot's value
  (name, date of birth, email, phone, address, city, insurance);
- ``patterns``: the patterns of everyday life and their rule tables;
- ``people``: people and pets by name, whom a later "she" means, what is said in
  passing (names, budgets, street addresses);
- ``domains``: the service lines' patterns and rule tables, and which rule reads a
  clause (``_match``);
- ``agent``: the agent's turns: confirmations, notes, questions and the caller's
  answers, ``analysis.data_collected``;
- ``extractor``: :class:`RuleExtractor`: the walk over the turns, requests the agent
  fulfilled, deduplication and salience.
"""

from projections.extraction.rules.extractor import RuleExtractor

__all__ = ["RuleExtractor"]
