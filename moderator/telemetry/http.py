"""A small HTTP server for ``/metrics``, ``/healthz`` and ``/readyz`` on a daemon thread."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from moderator.telemetry.health import Health

log = logging.getLogger(__name__)


class TelemetryServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health) -> None:
        registry_, health_ = registry, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry_), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    stale = {name: age for name, age in health_.liveness().items() if age is not None}
                    body = json.dumps({"status": "stalled" if stale else "ok", "stalled_seconds": stale}).encode() + b"\n"
                    self._send(503 if stale else 200, body, "application/json")
                elif path == "/readyz":
                    checks = health_.checks()
                    ok = bool(checks) and all(checks.values())
                    notes = {k: v for k, v in health_.notes().items() if not checks.get(k, True)}
                    body = json.dumps({"ready": ok, "checks": checks, **({"notes": notes} if notes else {})}).encode() + b"\n"
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b'{"error":"not found"}\n', "application/json")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                pass  # scrapes every few seconds would flood the logs

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="telemetry-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("telemetry listening on port %d (/metrics, /healthz, /readyz)", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
