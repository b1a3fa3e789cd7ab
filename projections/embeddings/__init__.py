"""Embeddings: memories into vectors, and the links between them."""
