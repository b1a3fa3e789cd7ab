"""docs/architecture.md's picture of the import graph is the code's (tests/import_graph.py)."""

from __future__ import annotations

from tests.import_graph import DOC, LAYERS, cycles, documented, layer_graph, render


def test_the_documented_import_graph_is_the_codes() -> None:
    assert documented(DOC.read_text()) == render(), (
        "docs/architecture.md's import graph differs from the code's:"
        " run `python -m tests.import_graph --write` and look at what changed"
    )


def test_the_layers_import_only_downward_and_have_no_cycle() -> None:
    _, imports = layer_graph()
    assert cycles(imports) == []
    for layer, targets in imports.items():
        below = set(LAYERS[LAYERS.index(layer) + 1 :])
        assert targets <= below, f"{layer} imports {sorted(targets - below)}, not below it"


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
