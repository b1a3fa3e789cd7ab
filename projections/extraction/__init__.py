"""Extraction: finished conversations into memories."""
