"""Entry point of the ``vidstyle`` command (``python -m vidstyle.cli`` works too); see :mod:`vidstyle.commands`."""
from __future__ import annotations

from .commands import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
