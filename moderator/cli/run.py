"""``moderator run``."""

from __future__ import annotations

import argparse
import logging

from moderator.app import Application
from moderator.media.decode import silence_decoder_warnings
from moderator.settings import load_settings
from moderator.telemetry.logs import configure_logging


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure_logging(settings.telemetry.log_level, settings.telemetry.log_format)
    silence_decoder_warnings()
    logging.getLogger(__name__).info("starting moderator; input %s", ",".join(settings.kafka.input_topics))
    return Application(settings).run()
