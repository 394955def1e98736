"""The known-content figures, measured side by side in one run (docs/benchmarks.md#hashing):

1. PDQ lookup latency, p50 and p99 over queries half within distance 31 of a bank hash and half
   unrelated, at 10 000, 100 000 and 1 000 000 random hashes: the project's index and faiss's
   ``IndexBinaryMultiHash(256, 16, 16)`` with ``nflip=1`` (the same exact scheme), and index
   memory per hash;
2. loading a 1 000 000-row bank file (CSV on disk -> served banks);
3. hashing cost per image: SHA-256 and PDQ at 640x480, 1920x1080 and 4000x3000, beside the
   decode of the same JPEG (what the service did per image before hashing), with the ratio.

    .venv/bin/python benchmarks/hashing.py            # prints one JSON object
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moderator.hashing.bankfile import write_bank  # noqa: E402
from moderator.hashing.banks import load_banks  # noqa: E402
from moderator.hashing.compute import pdq_of  # noqa: E402
from moderator.hashing.index import PdqIndex  # noqa: E402
from moderator.media.decode import DecodeLimits, decode_image  # noqa: E402
from tests.scenes import encode, scene  # noqa: E402

QUERIES = 2000


def queries(rng, hashes: np.ndarray) -> list[bytes]:
    out = []
    for i in range(QUERIES):
        if i % 2:
            out.append(rng.integers(0, 256, 32, dtype=np.uint8).tobytes())
            continue
        q = hashes[rng.integers(0, len(hashes))].copy()
        for b in rng.choice(256, int(rng.integers(0, 32)), replace=False):
            q[b // 8] ^= 1 << (7 - b % 8)
        out.append(q.tobytes())
    return out


def timed(search, qs: list[bytes]) -> tuple[float, float, int]:
    for q in qs[:50]:
        search(q)  # warm-up
    lat, found = [], 0
    for q in qs:
        t = time.perf_counter()
        found += search(q)
        lat.append(time.perf_counter() - t)
    ms = np.array(lat) * 1e3
    return round(float(np.percentile(ms, 50)), 4), round(float(np.percentile(ms, 99)), 4), found


def lookups(rng) -> dict:
    out = {}
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        faiss = None
    for n in (10_000, 100_000, 1_000_000):
        hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        qs = queries(rng, hashes)
        t = time.perf_counter()
        index = PdqIndex(hashes)
        build = time.perf_counter() - t
        p50, p99, found = timed(lambda q, index=index: len(index.search(q, 31)[0]) > 0, qs)
        row = {"index_p50_ms": p50, "index_p99_ms": p99, "index_build_s": round(build, 2), "index_bytes_per_hash": round(index.nbytes / n, 1), "matches": found}
        if faiss is not None:
            fx = faiss.IndexBinaryMultiHash(256, 16, 16)
            t = time.perf_counter()
            fx.add(hashes)
            row["faiss_build_s"] = round(time.perf_counter() - t, 2)
            fx.nflip = 1
            fp50, fp99, ffound = timed(lambda q, fx=fx: len(fx.range_search(np.frombuffer(q, np.uint8)[None], 32)[1]) > 0, qs)
            row.update(faiss_p50_ms=fp50, faiss_p99_ms=fp99, faiss_matches=ffound, p99_ratio_faiss_over_index=round(fp99 / p99, 2))
        out[str(n)] = row
    return out


def bank_load(rng) -> dict:
    n = 1_000_000
    hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as d:
        rows = [{"hash_type": "pdq", "hash": h.tobytes().hex(), "added": "2026-12-01"} for h in hashes]
        write_bank(Path(d) / "million.csv", "deny", rows, category="known_content")
        size = (Path(d) / "million.csv").stat().st_size
        t = time.perf_counter()
        banks = load_banks(Path(d), 10_000_000)
        load = time.perf_counter() - t
        import resource

        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "rows": n,
            "file_mb": round(size / 2**20, 1),
            "load_s": round(load, 2),
            "served_bytes_per_hash": round(banks.index_bytes() / n, 1),
            "process_peak_rss_mb": round(rss_mb),
        }


def hashing_cost() -> dict:
    out = {}
    for w, h in ((640, 480), (1920, 1080), (4000, 3000)):
        img = scene(3, (w, h))
        data = encode(img, "JPEG", quality=85)
        t = time.perf_counter()
        for _ in range(20):
            hashlib.sha256(data).digest()
        sha = (time.perf_counter() - t) / 20 * 1e3
        reps = 10 if w < 2000 else 3
        t = time.perf_counter()
        for _ in range(reps):
            decoded = decode_image(data, DecodeLimits())
        decode = (time.perf_counter() - t) / reps * 1e3
        t = time.perf_counter()
        for _ in range(reps):
            pdq_of(decoded)
        pdq = (time.perf_counter() - t) / reps * 1e3
        out[f"{w}x{h}"] = {
            "jpeg_kb": len(data) // 1024,
            "sha256_ms": round(sha, 3),
            "pdq_ms": round(pdq, 2),
            "decode_ms": round(decode, 2),
            "pdq_over_decode": round(pdq / decode, 2),
        }
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    result = {"lookup": lookups(rng), "bank_load_1m": bank_load(rng), "hashing_per_image": hashing_cost()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
