#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it in a fresh venv outside the
# checkout, and use it there with no path set — `moderator scan` of a labelled example with the
# bundled model and policy, and `moderator demo` (bundled broker script and examples; the service
# it starts is `moderator run` from the wheel). Run by .ci/run after the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
work=$(mktemp -d /tmp/moderator-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$SECONDS

python3 -m pip wheel --quiet --no-deps -w "$work/dist" . >/dev/null
wheel=$(ls "$work"/dist/moderator-*.whl)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel"
echo "wheel: $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KB), installed with its dependencies in $((SECONDS - start))s:" \
     "$(du -sm "$work/venv/lib" | cut -f1) MB" >&2

cd "$work"  # outside the checkout: nothing of it can be found by accident
export PATH="$work/venv/bin:$PATH" PYTHONDONTWRITEBYTECODE=1
version=$(python3 -c 'import tomllib; print(tomllib.load(open("'"$REPO"'/pyproject.toml", "rb"))["project"]["version"])')
[ "$(moderator --version)" = "moderator $version" ] || { echo "wheel: moderator --version is not $version" >&2; exit 1; }
python3 - "$work/venv" <<'PY'
import sys
from pathlib import Path
from moderator import bundled
venv = Path(sys.argv[1]).resolve()
assert bundled.installed(), "the wheel has no bundled model"
for p in (bundled.model_dir(), bundled.policy_path(), bundled.kafka_script(), bundled.examples_dir()):
    assert p.exists() and venv in p.resolve().parents, p
import onnxruntime, importlib.metadata as md
names = {d.metadata["Name"] for d in md.distributions()}
assert "onnxruntime" in names and "onnxruntime-gpu" not in names, "the base install is onnxruntime's CPU wheel, alone"
PY

knife=$(awk -F, '$2=="knife" && $7=="test" {print $1; exit}' "$REPO/examples/labels.csv")
cp "$REPO/examples/$knife" knife.jpg
moderator scan knife.jpg --json > scan.json
python3 -c '
import json; r = json.loads(open("scan.json").read())
assert r["decision"] == "block" and any(c["name"] == "weapons" and c["fired"] for c in r["categories"]), r'
echo "wheel: scan from the installed wheel blocked a knife with the bundled model and policy" >&2

# The demo: reuse the checkout's broker jars (they would otherwise be fetched again with mvn).
KAFKA_CACHE_DIR="$REPO/.cache/kafka" timeout 600 moderator demo --port "${WHEEL_DEMO_PORT:-29192}" > demo.log 2>&1 \
  || { tail -30 demo.log >&2; exit 1; }
grep -q "verdict" demo.log || { tail -30 demo.log >&2; echo "wheel: the demo printed no verdicts" >&2; exit 1; }
echo "wheel: moderator demo from the installed wheel: $(grep -c '' demo.log) lines, $((SECONDS - start))s in all" >&2
