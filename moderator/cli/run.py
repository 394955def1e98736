"""``moderator run``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from moderator.app import Application
from moderator.media.decode import silence_decoder_warnings
from moderator.settings import load_settings
from moderator.telemetry.logs import configure_logging


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run the service (settings from MODERATOR_* variables and/or --config)")
    p.add_argument("--config", type=Path, help="YAML settings file (default: $MODERATOR_CONFIG)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure_logging(settings.telemetry.log_level, settings.telemetry.log_format)
    silence_decoder_warnings()
    logging.getLogger(__name__).info("starting moderator; input %s", ",".join(settings.kafka.input_topics))
    return Application(settings).run()
