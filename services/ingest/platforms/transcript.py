"""Assembling a transcript's turns, with each tool call's result joined to its call.

Platforms report a tool's call and its result separately (ElevenLabs as
``tool_calls[]`` and ``tool_results[]``, Vapi as ``tool_calls`` and
``tool_call_result`` messages), linked by an id. memstream's
:class:`~schemas.ToolCall` holds name, arguments and result together, so the
adapters feed calls and results to a :class:`TranscriptBuilder` in transcript
order and it joins them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas import ToolCall, Turn
from schemas.events import TurnRole

__all__ = ["PendingTurn", "TranscriptBuilder"]


@dataclass
class _PendingToolCall:
    call_id: str | None
    name: str
    arguments: dict[str, Any]
    result: str | None = None
    answered: bool = False


@dataclass
class PendingTurn:
    """A turn still open to tool calls and results."""

    role: TurnRole
    text: str
    offset_ms: int
    tool_calls: list[_PendingToolCall] = field(default_factory=list)


class TranscriptBuilder:
    """Collects turns in order; :meth:`build` returns them as schema turns."""

    def __init__(self) -> None:
        self._turns: list[PendingTurn] = []
        self._calls_by_id: dict[str, _PendingToolCall] = {}

    def add_turn(self, role: TurnRole, text: str, offset_ms: int) -> PendingTurn:
        turn = PendingTurn(role=role, text=text, offset_ms=offset_ms)
        self._turns.append(turn)
        return turn

    def add_call(
        self, turn: PendingTurn, *, call_id: str | None, name: str, arguments: dict[str, Any]
    ) -> None:
        call = _PendingToolCall(call_id=call_id, name=name, arguments=arguments)
        turn.tool_calls.append(call)
        # The first call wins a duplicated id, so a result goes to one call only.
        if call_id is not None:
            self._calls_by_id.setdefault(call_id, call)

    def add_result(
        self, turn: PendingTurn | None, *, call_id: str | None, result: str | None
    ) -> bool:
        """Join ``result`` to its call; return False if no call is waiting for it.

        With an id, the call of that id anywhere earlier in the transcript; without
        one, the first unanswered call without an id in ``turn`` (same position).
        """
        call: _PendingToolCall | None
        if call_id is not None:
            call = self._calls_by_id.get(call_id)
        elif turn is None:
            return False
        else:
            call = next((c for c in turn.tool_calls if c.call_id is None and not c.answered), None)
        if call is None or call.answered:
            return False
        call.result = result
        call.answered = True
        return True

    def add_unmatched_result(self, turn: PendingTurn, *, name: str, result: str | None) -> None:
        """Keep a result whose call is not in the transcript, as a call without arguments."""
        # Kept rather than dropped: the result may be the only record of what the tool did.
        turn.tool_calls.append(
            _PendingToolCall(call_id=None, name=name, arguments={}, result=result, answered=True)
        )

    def build(self) -> tuple[Turn, ...]:
        return tuple(
            Turn(
                role=turn.role,
                text=turn.text,
                offset_ms=turn.offset_ms,
                tool_calls=tuple(
                    ToolCall(name=call.name, arguments=call.arguments, result=call.result)
                    for call in turn.tool_calls
                ),
            )
            for turn in self._turns
        )
