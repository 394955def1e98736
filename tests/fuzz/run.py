"""Coverage-guided fuzzing of one target with atheris (libFuzzer), for a fixed time.

    python -m tests.fuzz.run TARGET SECONDS WORKDIR [LIBFUZZER_FLAG ...]

Seeds the corpus with valid inputs and the crashers kept in tests/fuzz/corpus/TARGET; a new
crasher is written to WORKDIR as crash-<sha1> and the process exits non-zero. Further flags go
to libFuzzer: ``-fork=1 -ignore_crashes=1`` keeps a long run going past each crasher.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["moderator"]):
    from tests.fuzz import targets


def main() -> None:
    target, seconds, workdir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    fn = getattr(targets, target)
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(targets.seeds(target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    kept = targets.CORPUS / target
    dirs = [str(corpus)] + ([str(kept)] if kept.is_dir() else [])
    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        "-max_len=65536",
        "-rss_limit_mb=4096",
        "-timeout=20",
        f"-artifact_prefix={workdir}/",
        "-print_final_stats=1",
        *sys.argv[4:],
        *dirs,
    ]
    atheris.Setup(args, fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
