"""``python -m stalwart``: the ``stalwart`` command line (see :mod:`stalwart.cli`)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
