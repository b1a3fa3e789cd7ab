"""Platform adapters: a platform's verified, parsed webhook body in, memstream events out.

One module per platform, each made of pure functions (no I/O, no clock unless
told): :mod:`.elevenlabs`, :mod:`.vapi`, :mod:`.retell`. Each returns a
:class:`NormalisedWebhook` or raises :class:`PayloadError` naming the field whose
shape is wrong. Unknown fields are ignored everywhere: platforms add fields
without notice. Redelivering a webhook yields events with the same ids and the
same content (see :mod:`.webhook`).
"""

from services.ingest.platforms import elevenlabs, retell, vapi
from services.ingest.platforms.exceptions import PayloadError
from services.ingest.platforms.webhook import NormalisedWebhook

__all__ = ["NormalisedWebhook", "PayloadError", "elevenlabs", "retell", "vapi"]
