"""The README's demo and the benchmark, run as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from moderator.local.samples import animated_messages, hostile_messages
from moderator.local.service import free_port
from tests.conftest import REPO, TINY_MODEL

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_prints_a_verdict_or_dead_letter_for_every_sample():
    proc = subprocess.run([sys.executable, "-m", "moderator", "demo", "--port", str(free_port())], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "service exited with code 0" in out
    assert "UNEXPECTED" not in out and "MISSING" not in out
    hostile = [s for s in hostile_messages() if s.id]
    hostile_verdicts = sum(s.expect == "verdict" for s in hostile)
    animated = len(animated_messages())
    assert out.count(" verdict ") == 24 + animated + hostile_verdicts and out.count(" dead letter ") == 7 + len(hostile) - hostile_verdicts, out
    assert "stopping the local broker" in out
    agree, total = (int(x) for x in re.search(r"match the example's label: (\d+)/(\d+)", out).groups())
    assert total == 24 + animated and agree >= 22 + animated, f"the default model agrees with only {agree}/{total} labels:\n{out}"
    for line in out.splitlines():  # every animation is judged by its harmful frame, not its first
        if " animated-" in line and "(weapons)" in line:
            assert " block " in line, line


def run_bench(broker, *options: str) -> dict:
    """``moderator bench --json`` on the tiny model against the test broker; its JSON result."""
    command = [sys.executable, "-m", "moderator", "bench", "--json", "--model", str(TINY_MODEL), "--bootstrap", broker.bootstrap, *options]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_json_reports_both_throughputs_side_by_side(broker):
    result = run_bench(broker, "--images", "48", "--batch", "8", "--latency-images", "8", "--versus-precision", "fp32", "--versus-spinning")
    for key in ("encoder_images_per_s", "e2e_images_per_s", "ratio", "p50_ms", "p99_ms", "model", "precision", "batch_size"):
        assert key in result, key
    assert result["model"] == "tiny-random" and result["batch_size"] == 8
    assert result["encoder_images_per_s"] > 0 and result["e2e_images_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["e2e_images_per_s"] / result["encoder_images_per_s"], rel=0.01, abs=1e-4)
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["service_exit_code"] == 0
    assert result["repeats"] == 0.3 and result["e2e_images_per_s_with_repeats"] > 0
    assert result["cache_hits"] == round(48 * 0.3), "every repost (an image decided in the first backlog) was a cache hit"
    assert result["repeats_ratio"] == pytest.approx(result["e2e_images_per_s_with_repeats"] / result["e2e_images_per_s"], rel=0.01)
    # The service's CPU per image and each stage's share, and the pipeline around a tiny encoder.
    assert result["precision"] == "fp32" and result["decode"] == "fast"
    assert result["decode_mode"] == "processes"  # the default
    assert result["cpu_ms_per_image"] > 0 and set(result["stage_ms_per_image"]) == {"decode", "queue", "encode", "score"}
    # The service process alone (one worker's Python process) beside it with its decode processes, which do the decoding.
    assert 0 < result["service_process_cpu_ms_per_image"] < result["cpu_ms_per_image"]
    assert result["machine_cpu_ms_per_image"] > result["cpu_ms_per_image"]  # the broker and the bench's clients share the cores
    assert result["pdq"] is True  # the settings' default
    assert result["pipeline_e2e_images_per_s"] > 0 and result["pipeline_cpu_ms_per_image"] > 0
    assert result["stage_ms_per_image"]["decode"] > 0 and result["pipeline_stage_ms_per_image"]["encode"] > 0
    # The same measurements at another precision (here the same one: the tiny model has only fp32) and with
    # onnxruntime's spinning the other way (off by default, encoder.intra_op_spinning) in the same run.
    versus = result["versus"]
    assert result["intra_op_spinning"] is False and versus["intra_op_spinning"] is True
    assert versus["precision"] == "fp32" and versus["encoder_images_per_s"] > 0 and versus["e2e_images_per_s"] > 0
    assert result["e2e_ratio_vs_fp32_spinning"] == pytest.approx(result["e2e_images_per_s"] / versus["e2e_images_per_s"], rel=0.01)
    assert result["encoder_ratio_vs_fp32_spinning"] == pytest.approx(result["encoder_images_per_s"] / versus["encoder_images_per_s"], rel=0.01)


def test_bench_measures_a_consumer_group_of_workers(broker):
    """--workers starts that many service processes in one group (the bench waits until each holds
    partitions), with --decode-workers decode processes each; CPU is summed over all of them."""
    result = run_bench(
        broker, "--images", "32", "--batch", "8", "--latency-images", "4", "--repeats", "0", "--no-pipeline", "--workers", "2", "--decode-workers", "1"
    )
    assert (result["workers"], result["decode_workers"]) == (2, 1)
    assert result["e2e_images_per_s"] > 0 and result["service_exit_code"] == 0
    assert 0 < result["service_process_cpu_ms_per_image"] < result["cpu_ms_per_image"]
