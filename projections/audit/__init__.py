"""The audit read model: who read or erased whose personal data (``streams/audit.py``), and
its queries."""

from projections.audit.projection import AuditProjection
from projections.audit.queries import audit_trail, entry_json

__all__ = ["AuditProjection", "audit_trail", "entry_json"]
