"""The ``vad`` command line. Thin: each command imports its heavy modules lazily.

Commands live in ``vad/cli/commands/<area>.py`` and register themselves on the shared app.
"""

from __future__ import annotations

import importlib

from vad.cli.app import app

COMMAND_MODULES = ("model", "video", "training", "service", "demo", "watch", "reviews", "alerts", "adapt")

for _name in COMMAND_MODULES:
    importlib.import_module(f"vad.cli.commands.{_name}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
