"""The local embedding models' names, without loading them (``local.py`` loads them, and
onnxruntime with them): settings and the query service tell a local model from a remote
one by these."""

from __future__ import annotations

__all__ = ["FP32_MODEL_NAME", "LOCAL_MODELS", "MODEL_NAME", "is_local"]

#: The default local model: all-MiniLM-L6-v2, int8 arithmetic (``local.py``).
MODEL_NAME = "local/all-minilm-l6-v2-dq8"
#: all-MiniLM-L6-v2 with fp32 arithmetic, the default before ``MODEL_NAME``.
FP32_MODEL_NAME = "local/all-minilm-l6-v2-int8"
#: The local models, by the name recorded with their vectors.
LOCAL_MODELS = (MODEL_NAME, FP32_MODEL_NAME)


def is_local(model: str | None) -> bool:
    """Whether ``model`` (``MEMSTREAM_EMBEDDING_MODEL``) is a local model: empty (the
    default one) or one of :data:`LOCAL_MODELS`."""
    return not model or model in LOCAL_MODELS
