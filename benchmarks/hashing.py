"""The known-content figures, measured side by side in one run (docs/benchmarks.md#hashing):

1. PDQ lookup latency, p50 and p99 over queries half within distance 31 of a bank hash and half
   unrelated, at 10 000, 100 000 and 1 000 000 random hashes: the project's index and faiss's
   ``IndexBinaryMultiHash(256, 16, 16)`` with ``nflip=1`` (the same exact scheme), and index
   memory per hash;
2. loading a 1 000 000-row bank file (CSV on disk -> served banks);
3. hashing cost per image: SHA-256 and PDQ at 640x480, 1920x1080 and 4000x3000, beside the
   decode of the same JPEG (what the service did per image before hashing), with the ratio;
4. mirror images and turns (``hashing.pdq_turns``): PDQ with and without the dihedral hashes, one
   lookup against eight in a million-hash bank, and how near a mirrored or turned, re-encoded
   copy of a banked picture comes (photo-like scenes and pictograms) with turns and without;
5. borders (``hashing.pdq_trim_borders``): how near a banked picture reposted inside a uniform
   border comes with the border cut off and without, and what finding and cutting it costs.

    .venv/bin/python benchmarks/hashing.py [--sections lookup,bank_load_1m,hashing_per_image,turns,borders]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moderator.hashing.bankfile import write_bank  # noqa: E402
from moderator.hashing.banks import load_banks  # noqa: E402
from moderator.hashing.compute import content_box, hamming, pdq_of  # noqa: E402
from moderator.hashing.index import PdqIndex  # noqa: E402
from moderator.media.decode import DecodeLimits, decode_image  # noqa: E402
from tests.scenes import PILLOW_TURNS, encode, scene  # noqa: E402

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


def turns(rng) -> dict:
    out: dict = {"hashing_ms": {}}
    for w, h in ((640, 480), (1920, 1080)):
        img = scene(4, (w, h))
        times = {}
        for label, with_turns in (("pdq", False), ("pdq_with_turns", True), ("pdq_again", False)):
            t = time.perf_counter()
            for _ in range(20):
                pdq_of(img, turns=with_turns)
            times[label] = round((time.perf_counter() - t) / 20 * 1e3, 2)
        times["ratio"] = round(times["pdq_with_turns"] / ((times["pdq"] + times["pdq_again"]) / 2), 3)
        out["hashing_ms"][f"{w}x{h}"] = times
    hashes = rng.integers(0, 256, (1_000_000, 32), dtype=np.uint8)
    index = PdqIndex(hashes)
    frames = [rng.integers(0, 256, (8, 32), dtype=np.uint8) for _ in range(QUERIES // 4)]  # a frame: its hash and 7 turns
    for f in frames[:50]:  # warm-up
        index.search(f[0].tobytes(), 31)
    lat: dict[str, list[float]] = {"one": [], "eight_one_by_one": [], "eight_in_one_pass": []}
    for f in frames:
        t = time.perf_counter()
        index.search(f[0].tobytes(), 31)
        lat["one"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for q in f:
            index.search(q.tobytes(), 31)
        lat["eight_one_by_one"].append(time.perf_counter() - t)
        t = time.perf_counter()
        index.search(f[0].tobytes(), 31)  # the frame as it is (allow and deny banks), then its turns (deny)
        index.search_many([q.tobytes() for q in f[1:]], 31)
        lat["eight_in_one_pass"].append(time.perf_counter() - t)
    out["lookup_1m_ms"] = {f"{k}_{p}": round(float(np.percentile(v, int(p[1:]))) * 1e3, 4) for k, v in lat.items() for p in ("p50", "p99")}
    from moderator.pictograms.draw import render

    pictures = {
        "scenes_640x480": [scene(300 + i, (640, 480)) for i in range(20)],
        "pictograms_320x240": [
            render(obj, "black", 1, "beige", random.Random(i), (320, 240)) for i, obj in enumerate(["knife", "cup", "flower", "car", "pistol"] * 4)
        ],
    }
    out["reposts"] = {}
    for kind, images in pictures.items():
        with_turns, without = [], []
        for img in images:
            banked = pdq_of(img).bits
            for transform in PILLOW_TURNS.values():
                repost = pdq_of(decode_image(encode(img.transpose(transform), "JPEG", quality=75), DecodeLimits()), turns=True)
                with_turns.append(min(hamming(banked, b) for b in (repost.bits, *repost.turns)))
                without.append(hamming(banked, repost.bits))
        out["reposts"][kind] = {
            "copies": len(with_turns),
            "with_turns_distance_p50_p95_max": [int(np.percentile(with_turns, 50)), int(np.percentile(with_turns, 95)), max(with_turns)],
            "with_turns_matched_at_31": round(sum(d <= 31 for d in with_turns) / len(with_turns), 3),
            "without_turns_distance_min": min(without),
            "without_turns_matched_at_31": round(sum(d <= 31 for d in without) / len(without), 3),
        }
    return out


def borders(rng) -> dict:
    from PIL import ImageOps

    from moderator.pictograms.draw import render

    pictures = {
        "scenes_640x480": [scene(600 + i, (640, 480)) for i in range(12)],
        "pictograms_320x240": [render(obj, "black", 1, "beige", random.Random(i), (320, 240)) for i, obj in enumerate(["knife", "cup", "flower", "car"] * 3)],
    }
    frames = {"2% a side": (0.02, 0.02), "5% a side": (0.05, 0.05), "15% a side": (0.15, 0.15), "letterbox 12%": (0.0, 0.12)}
    out: dict = {"reposts": {}}
    for kind, images in pictures.items():
        for label, (fx, fy) in frames.items():
            trimmed, plain, cut = [], [], 0
            for i, img in enumerate(images):
                banked = pdq_of(img).bits
                fill = ("black", "white", (40, 120, 200))[i % 3]
                framed = ImageOps.expand(img.convert("RGB"), border=(int(img.width * fx), int(img.height * fy)), fill=fill)
                repost = pdq_of(decode_image(encode(framed, "JPEG", quality=80), DecodeLimits()), trim=True)
                plain.append(hamming(banked, repost.bits))
                if repost.trimmed is not None:
                    cut += 1
                    trimmed.append(hamming(banked, repost.trimmed.bits))
            out["reposts"][f"{kind}, {label}"] = {
                "copies": len(images),
                "border_found": cut,
                "trimmed_distance_max": max(trimmed) if trimmed else None,
                "untrimmed_distance_min": min(plain),
                "matched_at_31": round(sum(d <= 31 for d in trimmed) / len(images), 3),
            }
    cost: dict = {}
    for label, img in (
        ("photo-like, no border", scene(7, (640, 480))),
        ("pictogram on a plain background", render("cup", "black", 1, "beige", random.Random(1), (640, 480))),
        ("photo-like in a 10% border", ImageOps.expand(scene(7, (512, 384)), border=(64, 48), fill="black")),
    ):
        img = img.convert("RGB")
        times = {}
        for name, kwargs in (("pdq", {}), ("pdq_trim", {"trim": True}), ("pdq_turns_trim", {"turns": True, "trim": True}), ("pdq_again", {})):
            t = time.perf_counter()
            for _ in range(20):
                pdq_of(img, **kwargs)
            times[name] = round((time.perf_counter() - t) / 20 * 1e3, 2)
        t = time.perf_counter()
        px = np.ascontiguousarray(np.asarray(img))
        for _ in range(50):
            content_box(px)
        times["content_box"] = round((time.perf_counter() - t) / 50 * 1e3, 3)
        times["ratio_turns_trim"] = round(times["pdq_turns_trim"] / ((times["pdq"] + times["pdq_again"]) / 2), 2)
        cost[label] = times
    out["cost_ms"] = cost
    return out


SECTIONS = {"lookup": lookups, "bank_load_1m": bank_load, "hashing_per_image": lambda rng: hashing_cost(), "turns": turns, "borders": borders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated, of " + ", ".join(SECTIONS))
    names = [n.strip() for n in parser.parse_args().sections.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}")
    rng = np.random.default_rng(0)
    print(json.dumps({n: SECTIONS[n](rng) for n in names}, indent=2))


if __name__ == "__main__":
    main()
