"""Metrics (declared in one place), health and readiness, structured logs."""

from moderator.telemetry.health import Health
from moderator.telemetry.metrics import Metrics

__all__ = ["Health", "Metrics"]
