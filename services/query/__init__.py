"""The query service: what agents read at call start and mid-call (memory search,
briefing, context), over the read models."""
