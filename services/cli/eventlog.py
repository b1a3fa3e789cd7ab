"""(being written)"""

from __future__ import annotations

from services.cli.common import Commands


def register(commands: Commands) -> None:
    """Add this module's subcommands to the `memstream` parser."""
