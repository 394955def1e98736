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
    """Each alert links its runbook section with runbook_url (what Alertmanager, Grafana and
    PagerDuty integrations render as a link), under the Runbooks URL of pyproject.toml."""
    import tomllib

    import yaml

    RUNBOOKS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Runbooks"]
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/moderator.rules.yml").read_text())["groups"][0]["rules"]
    tests = (DEPLOY / "prometheus/tests/moderator.rules.test.yml").read_text()
    ops = (REPO / "docs/operations.md").read_text()
    for rule in rules:
        name = rule["alert"]
        assert f"alertname: {name}" in tests, f"{name} has no promtool test"
        base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert base == RUNBOOKS, f"{name}: runbook_url must start with pyproject's Runbooks URL"
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


OVERLAYS = ("cpu", "gpu", "ray", "cpu-scram-tls")
# Kinds of the operators the overlays use (KEDA, Prometheus Operator, KubeRay): kubernetes-validate
# has no schema for them, so the tests below check what they refer to instead.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PodMonitor", "PrometheusRule", "RayService"}


def render(overlay: str) -> list[dict]:
    import yaml

    result = run(tool("kubectl"), "kustomize", str(DEPLOY / "k8s/overlays" / overlay))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def pod_templates(docs: list[dict]) -> list[dict]:
    pods = [d["spec"]["template"] for d in by_kind(docs, "Deployment")]
    for svc in by_kind(docs, "RayService"):
        cluster = svc["spec"]["rayClusterConfig"]
        pods += [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    return pods


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_overlays_render_and_validate_strictly(overlay, tmp_path):
    validator = tool("kubernetes-validate")
    docs = render(overlay)
    core = [d for d in docs if d["kind"] not in CUSTOM_KINDS]
    assert core and {d["kind"] for d in docs} - CUSTOM_KINDS - {"ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "PodDisruptionBudget"} == set()
    import yaml

    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = run(validator, "--strict", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    for d in core:  # the validator is strict: an unknown field fails it
        if d["kind"] == "Deployment":
            d["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    path.write_text(yaml.safe_dump_all(core))
    assert overlay == "ray" or run(validator, "--strict", str(path)).returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_standard(overlay):
    """The checks of the "restricted" Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards)."""
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
    for template in pod_templates(render(overlay)):
        pod = template["spec"]
        ctx = pod.get("securityContext", {})
        assert ctx.get("runAsNonRoot") is True and ctx.get("runAsUser", 1) != 0
        assert not (pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"))
        for v in pod.get("volumes", []):
            assert set(v) - {"name"} <= allowed_volumes, v
        for c in pod["containers"] + pod.get("initContainers", []):
            cctx = c.get("securityContext", {})
            seccomp = cctx.get("seccompProfile", ctx.get("seccompProfile", {})).get("type")
            assert seccomp in ("RuntimeDefault", "Localhost"), f"{c['name']}: seccompProfile"
            assert cctx.get("allowPrivilegeEscalation") is False, f"{c['name']}: allowPrivilegeEscalation"
            assert cctx.get("capabilities", {}).get("drop") == ["ALL"], f"{c['name']}: capabilities"
            assert not cctx.get("privileged")


@pytest.mark.parametrize("overlay", ("cpu", "gpu", "cpu-scram-tls"))
def test_worker_pods_fit_the_service(overlay):
    from moderator.cli.topics import DEFAULT_PARTITIONS

    docs = render(overlay)
    (dep,) = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    value = {k: e.get("value") for k, e in env.items()}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["terminationGracePeriodSeconds"] > float(value["MODERATOR_SHUTDOWN_TIMEOUT_S"]), "SIGTERM must have time to drain"
    assert pod["automountServiceAccountToken"] is False and c["securityContext"]["readOnlyRootFilesystem"] is True
    # onnxruntime threads follow the CPU request, not the node's cores.
    threads = env["MODERATOR_ENCODER__INTRA_OP_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert threads["resource"] == "requests.cpu" and threads["containerName"] == c["name"] and "cpu" in c["resources"]["requests"]
    # The one writable place the service writes to is a declared volume.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert value["MODERATOR_POLICY__CACHE_DIR"].startswith("/var/cache/moderator/") and "/var/cache/moderator" in mounts
    # KEDA scales this Deployment on this consumer group's lag, never past the partitions.
    (scaled,) = by_kind(docs, "ScaledObject")
    trigger = scaled["spec"]["triggers"][0]
    assert scaled["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] and "replicas" not in dep["spec"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["allowIdleConsumers"] == "false"
    assert trigger["metadata"]["consumerGroup"] == value["MODERATOR_KAFKA__GROUP_ID"]
    assert trigger["metadata"]["topic"] == value["MODERATOR_KAFKA__INPUT_TOPICS"]
    assert trigger["metadata"]["bootstrapServers"] == value["MODERATOR_KAFKA__BOOTSTRAP_SERVERS"]
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= DEFAULT_PARTITIONS
    # The ServiceMonitor finds the metrics Service and its port.
    (service,), (monitor,) = by_kind(docs, "Service"), by_kind(docs, "ServiceMonitor")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items())
    if overlay == "cpu-scram-tls":
        assert value["MODERATOR_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
        assert "secretKeyRef" in env["MODERATOR_KAFKA__SASL_PLAIN_USERNAME"]["valueFrom"]
        assert not any("PASSWORD" in k and e.get("value") is None and "valueFrom" in e for k, e in env.items())
        secret_dir = next(p for p, n in mounts.items() if n == "kafka-credentials")
        assert value["MODERATOR_KAFKA__SASL_PLAIN_PASSWORD_FILE"].startswith(secret_dir + "/")
        (auth,) = by_kind(docs, "TriggerAuthentication")
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username", "password", "ca"}
    else:
        assert value.get("MODERATOR_KAFKA__SECURITY_PROTOCOL") is None


def test_prometheus_rule_is_generated_from_the_tested_rules():
    import yaml

    spec = importlib.util.spec_from_file_location("build_prometheusrule", DEPLOY / "k8s/build_prometheusrule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (DEPLOY / "k8s/base/prometheusrule.yaml").read_text() == module.build(), "stale: run python deploy/k8s/build_prometheusrule.py"
    (rule,) = by_kind(render("cpu"), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load((DEPLOY / "prometheus/rules/moderator.rules.yml").read_text())["groups"]


def test_ray_pods_expose_ray_metrics_apart_from_the_consumers():
    """KubeRay hands a port named "metrics" to Ray's exporter: the consumers' 9400 must not carry that name."""
    docs = render("ray")
    for template in pod_templates(docs):
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert ports.get("metrics") == 8080, ports
    monitors = {m["metadata"]["name"]: m for m in by_kind(docs, "PodMonitor")}
    assert {e["port"] for m in monitors.values() for e in m["spec"]["podMetricsEndpoints"]} == {"metrics", "moderator"}


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
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i}", **t["metadata"]}, "spec": t["spec"]} for i, t in enumerate(templates)]
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all(pods))
    result = run(validator, "--strict", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    pods[0]["spec"]["containers"][0]["ports"][0]["containerPort"] = "gcs"
    path.write_text(yaml.safe_dump_all(pods))
    assert run(validator, "--strict", str(path)).returncode != 0
