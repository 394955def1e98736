"""Deployment files, checked with the tools operators use: promtool, hadolint, the Compose
specification and Kubernetes schemas. Each check is also shown to reject a broken file."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent
DEPLOY = REPO / "deploy"


def tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}:{os.environ.get('PATH', '')}")
    if path is None:
        pytest.fail(f"{name} is not installed (.ci/run installs it: promtool from Debian's prometheus, the rest with the dev extra)")
    return path


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_alert_rules_are_valid_and_their_unit_tests_pass():
    promtool = tool("promtool")
    check = run(promtool, "check", "rules", str(DEPLOY / "prometheus/rules/moderator.rules.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "10 rules found" in check.stdout
    test = run(promtool, "test", "rules", str(DEPLOY / "prometheus/tests/moderator.rules.test.yml"))
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_alert_has_a_runbook_and_a_test():
    import yaml

    rules = yaml.safe_load((DEPLOY / "prometheus/rules/moderator.rules.yml").read_text())["groups"][0]["rules"]
    tests = (DEPLOY / "prometheus/tests/moderator.rules.test.yml").read_text()
    ops = (REPO / "docs/operations.md").read_text()
    for rule in rules:
        name = rule["alert"]
        assert f"alertname: {name}" in tests, f"{name} has no promtool test"
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"### {name}" in ops and anchor == name.lower(), f"{name} has no runbook section in docs/operations.md"


def test_prometheus_config_is_valid(tmp_path):
    promtool = tool("promtool")
    # The compose paths point into the container; check a copy that points at the repo.
    cfg = (DEPLOY / "prometheus/prometheus.yml").read_text().replace("/etc/prometheus/rules", str(DEPLOY / "prometheus/rules"))
    (tmp_path / "prometheus.yml").write_text(cfg)
    result = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint(tmp_path):
    hadolint = tool("hadolint")
    result = run(hadolint, "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "Dockerfile").write_text("FROM python\nRUN pip install requests\n")
    assert run(hadolint, str(tmp_path / "Dockerfile")).returncode != 0, "hadolint must reject an unpinned image"


def test_compose_file_matches_the_compose_specification(tmp_path):
    checker = tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "bad.yaml").write_text("services:\n  x:\n    image: a\n    restart_policy: always\n")
    assert run(checker, "--builtin-schema", "vendor.compose-spec", str(tmp_path / "bad.yaml")).returncode != 0


def test_kubernetes_manifests_validate(tmp_path):
    validator = tool("kubernetes-validate")
    manifests = sorted(str(p) for p in (DEPLOY / "k8s").glob("*.yaml"))
    result = run(validator, "--strict", *manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = (DEPLOY / "k8s/deployment.yaml").read_text().replace("replicas: 3", "replicas: three")
    (tmp_path / "bad.yaml").write_text(bad)
    assert run(validator, "--strict", str(tmp_path / "bad.yaml")).returncode != 0


def test_deployment_probes_and_grace_period_fit_the_service():
    import yaml

    dep = yaml.safe_load((DEPLOY / "k8s/deployment.yaml").read_text())
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert pod["terminationGracePeriodSeconds"] > float(env["MODERATOR_SHUTDOWN_TIMEOUT_S"]), "SIGTERM must have time to drain"


def test_dashboards_are_current_and_templated():
    spec = importlib.util.spec_from_file_location("build_dashboards", DEPLOY / "grafana/build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    jobs = ('job=~"$job"', 'job=~"$ray_job"', 'job=~"$triton_job"')
    for name, build in (("overview", module.overview), ("policy", module.policy), ("serving", module.serving), ("backends", module.backends)):
        path = DEPLOY / f"grafana/dashboards/moderator-{name}.json"
        on_disk = json.loads(path.read_text())
        assert on_disk == build(), f"{path} is stale: run python deploy/grafana/build_dashboards.py"
        names = [v["name"] for v in on_disk["templating"]["list"]]
        assert names[:2] == ["datasource", "job"]
        for panel in on_disk["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            for t in panel["targets"]:
                assert any(j in t["expr"] for j in jobs), f"{panel['title']}: {t['expr']}"


def _ray_files():
    import yaml

    serve_config = yaml.safe_load((DEPLOY / "ray/serve-config.yaml").read_text())
    service = next(d for d in yaml.safe_load_all((DEPLOY / "ray/rayservice.yaml").read_text()) if d["kind"] == "RayService")
    return serve_config, service


def test_ray_serve_config_validates_and_builds_the_pipeline():
    from ray.serve.schema import ServeDeploySchema

    from moderator.serving.ray_app import pipeline

    serve_config, service = _ray_files()
    for config in (serve_config, __import__("yaml").safe_load(service["spec"]["serveConfigV2"])):
        schema = ServeDeploySchema.model_validate(config)
        (app,) = schema.applications
        assert app.import_path == "moderator.serving.ray_app:pipeline"
    # Serve imports the builder and calls it with args: the settings in the file must validate.
    built = pipeline(serve_config["applications"][0]["args"])
    assert built is not None
    with pytest.raises(Exception, match="consumers"):
        pipeline({**serve_config["applications"][0]["args"], "consumers": 0})


def test_rayservice_runs_the_serve_config_application():
    """The KubeRay manifest embeds serve-config.yaml's application, less the broker address,
    which its pods set through MODERATOR_KAFKA__BOOTSTRAP_SERVERS."""
    import yaml

    serve_config, service = _ray_files()
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    expected = json.loads(json.dumps(serve_config))
    del expected["applications"][0]["args"]["settings"]["kafka"]["bootstrap_servers"]
    assert embedded == expected
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for template in pods:
        env = {e["name"] for c in template["spec"]["containers"] for e in c["env"]}
        assert "MODERATOR_KAFKA__BOOTSTRAP_SERVERS" in env


def test_rayservice_pod_templates_validate_as_kubernetes_pods(tmp_path):
    """kubernetes-validate has no KubeRay schema; the pod templates inside it are core Pods."""
    import yaml

    validator = tool("kubernetes-validate")
    _, service = _ray_files()
    cluster = service["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i}", **t["metadata"]}, "spec": t["spec"]}
            for i, t in enumerate(templates)]
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all(pods))
    result = run(validator, "--strict", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    pods[0]["spec"]["containers"][0]["ports"][0]["containerPort"] = "gcs"
    path.write_text(yaml.safe_dump_all(pods))
    assert run(validator, "--strict", str(path)).returncode != 0
