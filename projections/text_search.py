"""Full-text matching shared by the read models' searches."""

from __future__ import annotations

__all__ = ["ANY_TERM_QUERY"]

#: A tsquery (SQL) matching any term of ``%(text)s``: plainto_tsquery ANDs the terms, and
#: a spoken question rarely repeats every word of the memory or turn it is about. NULL
#: when the text has no searchable term (only stop words), which matches nothing.
ANY_TERM_QUERY = (
    "nullif(replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | '), '')::tsquery"
)
