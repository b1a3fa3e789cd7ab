"""How vectors are recorded in ``embedding.computed``: float32 values in their shortest
decimal form, read back to the same float32 as the doubles older events carry."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from projections.embeddings.processor import float32_values
from schemas import EmbeddingComputed, Source, decode_event, encode_event
from schemas.events import EmbeddingComputedData
from tests.helpers import BASE_TIME


def event(vector: list[float]) -> EmbeddingComputed:
    return EmbeddingComputed.create(
        tenant="acme",
        subject="acme/+15550000001",
        source=Source(platform="memstream"),
        occurred_at=BASE_TIME,
        data={"memory_id": uuid.uuid4(), "model": "m", "dimension": len(vector), "vector": vector},
    )


def model_output(seed: int, rows: int = 64, dimension: int = 384) -> Any:
    """Unit float32 vectors (a numpy array), as the local model returns them."""
    matrix = np.random.default_rng(seed).standard_normal((rows, dimension))
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def test_recorded_values_are_the_models_float32_values_in_shortest_text() -> None:
    output = model_output(1)
    recorded = float32_values(output.tolist())
    assert np.array_equal(np.asarray(recorded, dtype=np.float32), output)
    for values, row in zip(recorded, output, strict=True):
        # The event's JSON carries the shortest text of each float32 (numpy's repr of a
        # float32 is that text too), not the 17-digit text of the float32 as a double.
        assert orjson.loads(orjson.dumps(values)) == values
        for value, exact in zip(values[:20], row[:20], strict=True):
            assert float(repr(value)) == float(str(exact))
            assert len(repr(value)) <= len(repr(float(exact)))


def test_an_old_event_with_doubles_and_a_new_one_decode_to_the_same_float32() -> None:
    output = model_output(2, rows=8)
    for row in output:
        old = encode_event(event(row.tolist()))  # the doubles of the float32 values
        new = encode_event(event(float32_values([row.tolist()])[0]))
        assert len(new) < 0.75 * len(old)
        old_vector = np.asarray(decode_event(old).data.vector, dtype=np.float32)  # type: ignore[attr-defined]
        new_vector = np.asarray(decode_event(new).data.vector, dtype=np.float32)  # type: ignore[attr-defined]
        assert np.array_equal(old_vector, row) and np.array_equal(new_vector, row)


def test_a_model_answering_doubles_is_recorded_rounded_to_float32() -> None:
    doubles = np.random.default_rng(3).standard_normal((4, 16))
    recorded = np.asarray(float32_values(doubles.tolist()))
    assert np.array_equal(recorded.astype(np.float32), doubles.astype(np.float32))
    assert np.allclose(recorded, doubles, rtol=1e-7, atol=0)


def test_no_vectors_record_nothing() -> None:
    assert float32_values([]) == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_vector_value_that_is_not_finite_is_rejected(bad: float) -> None:
    with pytest.raises(ValidationError, match="finite"):
        EmbeddingComputedData.model_validate(
            {"memory_id": uuid.uuid4(), "model": "m", "dimension": 2, "vector": [bad, 0.5]}
        )
