"""Dashboards and alert rules against a real Prometheus (Debian's package) scraping the service
under load: every panel's query must succeed and return data; every rule must evaluate cleanly."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request

import pytest

from moderator.local.service import free_port
from tests.conftest import REPO
from tests.integration.conftest import produce, small_jpegs, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = "moderator"
SUBSTITUTIONS = {"$__rate_interval": "15s", "$__range": "2m", "$job": JOB, "$category": ".*"}


class Prometheus:
    def __init__(self, tmp_path, target: str) -> None:
        binary = shutil.which("prometheus") or pytest.fail("prometheus is not installed (.ci/run installs Debian's package)")
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(REPO / "deploy/prometheus/rules/moderator.rules.yml")],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }))
        self.log = (tmp_path / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def panel_queries():
    for path in sorted((REPO / "deploy/grafana/dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for var, value in SUBSTITUTIONS.items():
                    expr = expr.replace(var, value)
                yield f"{dash['title']} / {panel['title']} / {target['refId']}", expr


def test_every_dashboard_panel_returns_data_and_every_rule_evaluates(broker, topics, service, tmp_path):
    t = topics(2)
    svc = service(t, kafka={"lag_interval_ms": 1000}, batch={"max_size": 4})
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            batch = list(small_jpegs(f"{t.input}-{n}", 20))
            batch.append((f"junk-{n}", b"junk", b"not an image at all", [("moderation-id", f"junk-{n}".encode())]))
            produce(broker.bootstrap, t.input, batch)
            n += 1
            stop.wait(0.5)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    prom = Prometheus(tmp_path, f"127.0.0.1:{svc.port}")
    try:
        wait_until(prom.ready, 60, "Prometheus to start")
        wait_until(lambda: prom.api("/api/v1/query", query=f'up{{job="{JOB}"}} == 1')["data"]["result"], 60, "the first scrape")
        # Enough history for 2-minute increases and 15-second rates, under continuous load.
        wait_until(lambda: prom.api("/api/v1/query", query=f'count_over_time(moderator_verdicts_total{{job="{JOB}",decision="allow"}}[2m]) >= 20')["data"]["result"],
                   120, "twenty scrapes with traffic")
        failures = []
        queries = list(panel_queries())
        assert len(queries) >= 25
        for name, expr in queries:
            body = prom.api("/api/v1/query", query=expr)
            if body.get("status") != "success":
                failures.append(f"{name}: error {body}")
            elif not body["data"]["result"]:
                failures.append(f"{name}: no data for {expr}")
        assert not failures, "\n".join(failures)

        groups = prom.api("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == 7
        bad = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
        assert not bad, bad
        firing = [r["name"] for r in rules if r["state"] == "firing"]
        assert not firing, f"a healthy service under load fires {firing}"
    finally:
        stop.set()
        loader.join(10)
        prom.stop()
    assert svc.terminate() == 0
