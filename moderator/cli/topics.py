"""``moderator topics create|check``: the topics the service needs, laid out as recommended
(docs/operations.md#topics). The service itself never creates topics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from moderator.errors import StartupError
from moderator.settings import load_settings
from moderator.stream.clients import make_admin
from moderator.stream.topics import Recommendation, recommend

# Partitions of each topic `topics create` makes: the most workers that can share the load (the
# Kubernetes autoscaler's maxReplicaCount stays at or under it: deploy/k8s/workers/scaledobject.yaml).
DEFAULT_PARTITIONS = 12


def add_parser(sub) -> None:
    p = sub.add_parser("topics", help="create or check the input, verdict and dead-letter topics")
    cmds = p.add_subparsers(dest="topics_command", required=True, metavar="SUBCOMMAND")
    for name, handler, text in (
        ("create", create, "create the missing topics as recommended (existing ones are left alone)"),
        ("check", check, "compare the topics with the recommendations; exit 1 if one is missing"),
    ):
        c = cmds.add_parser(name, help=text)
        c.add_argument("--config", type=Path, help="YAML settings file (kafka section)")
        c.add_argument(
            "--partitions", type=int, default=DEFAULT_PARTITIONS, help="partitions of each topic: at least the most workers you will run (default 12)"
        )
        c.add_argument("--replication-factor", type=int, help="default: 3, or the number of brokers if fewer")
        if name == "create":
            c.add_argument("--dry-run", action="store_true", help="print what would be created")
        c.set_defaults(handler=handler)


def _plan(args) -> tuple[list[Recommendation], Any]:
    settings = load_settings(args.config)
    if args.partitions < 1:
        raise StartupError("--partitions must be at least 1")
    admin = make_admin(settings.kafka)
    brokers = len(admin.describe_cluster().get("brokers") or []) or 1
    plan = recommend(settings.kafka, args.partitions, brokers)
    if args.replication_factor is not None:
        if not 1 <= args.replication_factor <= brokers:
            admin.close()
            raise StartupError(f"--replication-factor must be 1..{brokers} (brokers in the cluster)")
        plan = [
            Recommendation(
                r.topic,
                r.role,
                r.partitions,
                args.replication_factor,
                {**r.configs, "min.insync.replicas": str(max(1, min(2, args.replication_factor - 1)))},
                r.why,
            )
            for r in plan
        ]
    return plan, admin


def _existing(admin, topics: list[str]) -> dict[str, dict]:
    return {t["name"]: t for t in admin.describe_topics(topics) if t.get("error_code") == 0 and t.get("partitions")}


def create(args: argparse.Namespace) -> int:
    plan, admin = _plan(args)
    try:
        existing = _existing(admin, [r.topic for r in plan])
        missing = [r for r in plan if r.topic not in existing]
        for r in plan:
            if r.topic in existing:
                print(f"{r.topic}: exists ({len(existing[r.topic]['partitions'])} partitions); left alone")
        for r in missing:
            configs = " ".join(f"{k}={v}" for k, v in sorted(r.configs.items()))
            print(
                f"{r.topic}: {'would create' if args.dry_run else 'creating'} ({r.role}): {r.partitions} partitions, "
                f"replication {r.replication_factor}, {configs}"
            )
        if missing and not args.dry_run:
            admin.create_topics({r.topic: {"num_partitions": r.partitions, "replication_factor": r.replication_factor, "configs": r.configs} for r in missing})
    finally:
        admin.close()
    return 0


def check(args: argparse.Namespace) -> int:
    from kafka.admin import ConfigResource, ConfigResourceType

    plan, admin = _plan(args)
    missing = 0
    try:
        existing = _existing(admin, [r.topic for r in plan])
        present = [r for r in plan if r.topic in existing]
        configs = (
            admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, r.topic, configs={k: None for k in r.configs}) for r in present], config_filter="all"
            ).get("topic", {})
            if present
            else {}
        )
    finally:
        admin.close()
    inputs = {r.topic: len(existing[r.topic]["partitions"]) for r in present if r.role == "input"}
    for r in plan:
        if r.topic not in existing:
            missing += 1
            print(f"{r.topic} ({r.role}): MISSING — the service stays not ready until it exists (moderator topics create)")
            continue
        topic = existing[r.topic]
        partitions = len(topic["partitions"])
        replication = min(len(p.get("replica_nodes") or []) for p in topic["partitions"])
        differs = []
        if r.role != "input" and inputs and partitions not in inputs.values():
            differs.append(
                f"{partitions} partitions, the input has {', '.join(map(str, sorted(set(inputs.values()))))}: "
                "outputs are placed by key instead of by the input's partition"
            )
        if replication < r.replication_factor:
            differs.append(f"replication {replication}, recommended {r.replication_factor}")
        for key, want in sorted(r.configs.items()):
            have = (configs.get(r.topic, {}).get(key) or {}).get("value")
            if have != want:
                differs.append(f"{key}={have}, recommended {want}")
        status = "ok" if not differs else "differs"
        print(f"{r.topic} ({r.role}): {status}: {partitions} partitions, replication {replication}")
        for d in differs:
            print(f"  - {d}")
    if missing:
        print(f"{missing} topics missing", file=sys.stderr)
    return 1 if missing else 0
