"""``python -m services.live``: the live processor alone (``memstream live`` does the same)."""

from __future__ import annotations

import sys

from services.cli.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["live", *sys.argv[1:]]))
