"""Entry point of the ``stalwart`` console script and of ``python -m stalwart.cli``."""

from __future__ import annotations

from . import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
