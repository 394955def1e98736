"""``moderator schemas``: regenerate the JSON Schemas of the wire formats and the policy file."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("schemas", help="write the JSON Schemas of the wire formats and the policy file")
    p.add_argument("--out", type=Path, default=Path("docs"), help="docs directory (default: docs)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from moderator.wire.schemas import write_schemas

    for path in write_schemas(args.out):
        print(path)
    return 0
