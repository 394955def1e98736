"""Producer compression of the service's own outputs, each codec side by side in one run
(docs/benchmarks.md#producer-compression): verdict batches (JSON, as a Kafka record batch holds
them: 100 verdicts) and dead-letter batches (photo-sized JPEGs), through the same codec code
kafka-python uses (kafka.codec). Prints one JSON object.

    .venv/bin/python benchmarks/producer_compression.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import codec  # noqa: E402

from moderator.local.samples import jpeg_stream  # noqa: E402

CODECS = {
    "gzip": codec.gzip_encode,
    "snappy": codec.snappy_encode,
    "lz4": codec.lz4_encode,
    "zstd": codec.zstd_encode,
}


def verdict(i: int) -> bytes:
    categories = [
        {
            "name": n,
            "score": round(0.1 + (i * 7 % 13) / 50, 6),
            "review_threshold": 0.47,
            "block_threshold": 0.76,
            "action": "allow",
            "fired": False,
            "frame": None,
            "frame_timestamp_ms": None,
        }
        for n in ("weapons", "drugs", "alcohol", "smoking", "fire")
    ]
    return json.dumps(
        {
            "schema_version": 2,
            "id": f"upload-{i:08d}",
            "source": {"topic": "images", "partition": i % 12, "offset": 10_000 + i, "timestamp": 1764331200000 + i},
            "model": {"name": "pictoclip-default", "checksum": "9a3c385ddd241e5e", "precision": "fp32", "backend": "onnx"},
            "policy": {"name": "default", "version": "65b23d481bc68137", "label": ""},
            "decision": "allow",
            "reasons": [],
            "categories": categories,
            "metadata": {"user": f"u-{i % 997}"},
            "timings": {"decode_ms": 3.8, "queue_ms": 20.3, "encode_ms": 41.0, "score_ms": 0.1, "batch_size": 16},
            "shadow": None,
            "hashes": {"sha256": f"{i:064x}", "pdq": [{"hash": f"{i * 7919:064x}", "quality": 94, "frame": None}]},
            "known": None,
            "cached": False,
            "processed_at": "2026-12-02T04:00:00.000Z",
        }
    ).encode()


def measure(payload: bytes, encode, reps: int) -> dict:
    encode(payload)
    t = time.perf_counter()
    for _ in range(reps):
        out = encode(payload)
    seconds = (time.perf_counter() - t) / reps
    return {"ratio": round(len(payload) / len(out), 2), "ms_per_mb": round(seconds * 1e3 / (len(payload) / 2**20), 2)}


def main() -> None:
    verdicts = b"".join(verdict(i) for i in range(100))
    letters = b"".join(jpeg_stream(8, seed=9))
    result = {"verdict_batch_bytes": len(verdicts), "dead_letter_batch_bytes": len(letters), "codecs": {}}
    for name, encode in CODECS.items():
        result["codecs"][name] = {"verdicts": measure(verdicts, encode, 50), "dead_letters": measure(letters, encode, 5)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
