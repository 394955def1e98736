"""Wire formats: input messages (raw image or JSON envelope), verdicts and dead letters.

docs/wire-format.md is the reference; docs/schemas/*.json are generated from these models
(``moderator schemas --out docs/schemas``) and a test keeps them in step.
"""

from moderator.wire.deadletter import dead_letter_headers
from moderator.wire.input import ImageRequest, Source, parse_message
from moderator.wire.verdict import SCHEMA_VERSION, Verdict, build_verdict

__all__ = ["SCHEMA_VERSION", "ImageRequest", "Source", "Verdict", "build_verdict", "dead_letter_headers", "parse_message"]
