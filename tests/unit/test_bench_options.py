"""`moderator bench` starts its service processes with the options the settings give, as the
figures it reports say: the services do not inherit MODERATOR_* variables, so each must be passed."""

from __future__ import annotations

from moderator.cli.bench import service_settings, settle_options
from moderator.cli.main import _parser
from moderator.settings import load_settings


def _settled(*argv: str):
    args = _parser().parse_args(["bench", *argv])
    settle_options(args)
    return args, service_settings(args, "127.0.0.1:9092", {"precision": args.precision}, "in", "out", "dlq", "group")


def test_unset_options_come_from_the_environment_and_reach_the_service(monkeypatch):
    for name, value in {
        "MEDIA__DECODE_MODE": "threads",
        "MEDIA__DECODE_WORKERS": "3",
        "HASHING__PDQ": "false",
        "ENCODER__PRECISION": "int8",
        "MEDIA__CROPS": "centre",
    }.items():
        monkeypatch.setenv(f"MODERATOR_{name}", value)
    monkeypatch.setenv("MODERATOR_ENCODER__INTRA_OP_SPINNING", "true")
    args, service = _settled()
    assert (args.decode_mode, args.decode_workers, args.pdq, args.precision, args.spinning) == ("threads", 3, False, "int8", True)
    assert service["media"]["decode_mode"] == "threads" and service["media"]["decode_workers"] == 3 and service["hashing"]["pdq"] is False
    assert args.crops == service["media"]["crops"] == "centre"
    assert load_settings(**service).media.decode_mode == "threads"  # what the service will validate


def test_flags_win_over_the_settings(monkeypatch):
    monkeypatch.setenv("MODERATOR_MEDIA__DECODE_MODE", "threads")
    monkeypatch.setenv("MODERATOR_HASHING__PDQ", "false")
    monkeypatch.setenv("MODERATOR_MEDIA__CROPS", "centre")
    args, service = _settled("--decode-mode", "processes", "--decode-workers", "1", "--pdq", "--no-spinning", "--precision", "fp32", "--crops", "cover")
    assert (args.decode_mode, args.decode_workers, args.pdq, args.spinning, args.precision) == ("processes", 1, True, False, "fp32")
    assert service["media"] == {"fast_decode": True, "decode_mode": "processes", "decode_workers": 1, "crops": "cover", "max_crops": 5}


def test_bench_measures_the_precision_the_settings_ask_for(monkeypatch, tmp_path):
    """`MODERATOR_ENCODER__PRECISION=int8 moderator bench` once measured fp32: the service it
    starts does not inherit MODERATOR_* variables, so the precision is read here and passed."""
    args, service = _settled()
    assert args.precision == "fp32" and service["encoder"]["precision"] == "fp32"
    monkeypatch.setenv("MODERATOR_ENCODER__PRECISION", "int8")
    args, service = _settled()
    assert args.precision == "int8" and service["encoder"]["precision"] == "int8"
    config = tmp_path / "s.yaml"
    config.write_text("encoder: {precision: fp16}\n")
    monkeypatch.delenv("MODERATOR_ENCODER__PRECISION")
    assert _settled("--config", str(config))[0].precision == "fp16"
    assert _settled("--config", str(config), "--precision", "fp32")[0].precision == "fp32", "--precision wins"
