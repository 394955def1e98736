"""``moderator``: run the service, scan files, run the demo and the benchmark, manage models.

Each command's module owns its parser (``add_parser(sub)``, which sets the ``handler``); this
module only assembles them and turns start-up errors into exit code 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from moderator import __version__
from moderator.cli import bench, demo, hashes, models, policy, run, scan, schemas, topics
from moderator.errors import StartupError

COMMANDS = (run, scan, demo, bench, policy, models, schemas, hashes, topics)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moderator", description="Streaming image moderation with CLIP encoders and YAML policies.")
    p.add_argument("--version", action="version", version=f"moderator {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # inside the try: a reader gone before the last buffered line is a closed pipe too
        return code
    except StartupError as exc:
        print(f"moderator: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`moderator scan --json | head`): stop quietly, as Unix tools do
        # (killed by SIGPIPE: 141), and keep Python's exit-time flush from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    raise SystemExit(main())
