"""Every projection memstream runs passes the contract suite: each entry of
``projections.PROJECTIONS`` has a ProjectionContract (read model) or ProcessorContract
(processor) subclass that pytest collects somewhere under tests/integration.

No broker and no database: the test imports the modules that mention a contract and walks
the contracts' subclasses.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from projections import PROJECTIONS
from streams.projection import Projection
from tests.integration.projection_contract import ProcessorContract, ProjectionContract

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CONTRACTS = (ProjectionContract, ProcessorContract)


def contract_modules() -> list[str]:
    """The modules under tests/integration whose source names a contract class."""
    names = []
    for path in sorted(HERE.rglob("*.py")):
        text = path.read_text()
        if any(c.__name__ in text for c in CONTRACTS) and path.name != "projection_contract.py":
            names.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return names


def subclasses(cls: type) -> Iterable[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def collected(cls: type) -> bool:
    """Whether pytest collects the class's tests: a ``Test*`` class of a ``test_*.py``
    module (a helper base class elsewhere covers nothing by itself)."""
    module = cls.__module__.rpartition(".")[2]
    return module.startswith("test_") and cls.__name__.startswith("Test")


def covered() -> dict[type[Projection], list[type]]:
    """Each projection class with a collected contract subclass: those subclasses."""
    for name in contract_modules():
        importlib.import_module(name)
    found: dict[type[Projection], list[type]] = {}
    for contract in CONTRACTS:
        for sub in subclasses(contract):
            tested = getattr(sub, "projection", None) or getattr(sub, "processor", None)
            if isinstance(tested, type) and collected(sub):
                found.setdefault(tested, []).append(sub)
    return found


def missing_contracts(
    registry: Mapping[str, type[Projection[Any]]], found: Mapping[type[Projection], list[type]]
) -> list[str]:
    """What is wrong with the registry's coverage, one line per projection: no contract
    (the class itself must be tested: a contract for a parent class does not cover a
    subclass, which may override apply), or a processor (it appends events) with only a
    ProjectionContract, which compares its tables and not what it appends."""
    problems = []
    for name, cls in sorted(registry.items()):
        contracts = found.get(cls, [])
        if not contracts:
            problems.append(f"{name} ({cls.__module__}.{cls.__qualname__}): no contract")
        elif cls.produces and not any(issubclass(c, ProcessorContract) for c in contracts):
            problems.append(f"{name}: appends events, but has no ProcessorContract")
    return problems


def test_every_registered_projection_has_a_contract() -> None:
    problems = missing_contracts(PROJECTIONS, covered())
    assert not problems, (
        "add a ProjectionContract or ProcessorContract subclass under tests/integration"
        " (see tests/integration/projection_contract.py) for:\n" + "\n".join(problems)
    )


class _Unregistered(Projection):
    """A projection nobody wrote a contract for."""

    name: ClassVar[str] = "unregistered"
    topics: ClassVar[tuple[str, ...]] = ()
    tables: ClassVar[tuple[str, ...]] = ()

    def schema_sql(self) -> str:
        return ""

    async def apply(self, conn: Any, prepared: Any) -> None:
        return None


class _Deriving(_Unregistered):
    """A processor tested as a read model only."""

    name: ClassVar[str] = "deriving"
    produces: ClassVar[tuple[str, ...]] = ("memories",)


class _ReadModelContractOnly(ProjectionContract):  # not collected: no Test prefix
    projection: ClassVar[type[Projection]] = _Deriving


def test_a_projection_without_a_contract_is_named() -> None:
    found = covered()
    registry = {**PROJECTIONS, "unregistered": _Unregistered, "deriving": _Deriving}
    problems = missing_contracts(registry, found)
    assert problems == [
        f"deriving ({__name__}._Deriving): no contract",
        f"unregistered ({__name__}._Unregistered): no contract",
    ]
    # Not collected by pytest (no Test prefix), so it covers nothing.
    assert _Deriving not in found
    found[_Deriving] = [_ReadModelContractOnly]
    assert missing_contracts({"deriving": _Deriving}, found) == [
        "deriving: appends events, but has no ProcessorContract"
    ]
