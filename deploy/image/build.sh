#!/usr/bin/env bash
# Build the container image without a Docker engine, and run it for real.
#
#   deploy/image/build.sh base     # a Debian base image from the Debian mirror (debootstrap), once
#   deploy/image/build.sh build    # the project's Dockerfile on that base (buildah bud)
#   deploy/image/build.sh check    # run the built image: scan, uid, read-only root, run against a broker
#   deploy/image/build.sh all      # the three, as .ci/run does
#
# No container registry is reachable where CI runs, so the Dockerfile's public base
# (python:3.11-slim-bookworm) is replaced by a debootstrap of Debian bookworm with python3, given
# through its CPU_BASE argument; real users keep the public default. buildah (Debian's, 1.28) builds
# with the vfs driver and chroot isolation: no daemon, no overlay mounts. Steps that reach PyPI
# read the host's CA bundle and pip configuration through read-only build-time mounts, never
# baked into the image. Needs root (debootstrap, buildah's vfs store, mount namespaces).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
WORK=${IMAGE_WORK_DIR:-$REPO/.cache/image}
BASE_IMAGE=localhost/moderator-base:bookworm
IMAGE=${IMAGE:-localhost/moderator:ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The image budget (MB): today's is ~600 MB (python3 + onnxruntime + numpy + PyAV + tritonclient +
# the model); a dependency that adds 100 MB should be a decision, not an accident.
BUDGET_MB=${IMAGE_BUDGET_MB:-750}
BUILDAH=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/run")
mkdir -p "$WORK"

need() { command -v "$1" >/dev/null || { echo "image: $1 is missing (apt-get install buildah debootstrap)" >&2; exit 2; }; }
say() { echo "image: $*" >&2; }

base() {
  need debootstrap
  need buildah
  if "${BUILDAH[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then say "base $BASE_IMAGE exists"; return; fi
  local root="$WORK/rootfs" start=$SECONDS
  rm -rf "$root"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  local ctr
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$ctr" "$root" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/sh "$ctr"
  "${BUILDAH[@]}" commit --rm "$ctr" "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
  say "base $BASE_IMAGE made in $((SECONDS - start))s"
}

build() {
  need buildah
  local start=$SECONDS mounts=()
  # Build-time only: the host's CA bundle (a TLS-intercepting proxy's CA lives there) and pip's settings.
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do [ -f "$f" ] && mounts+=(--volume "$f:$f:ro"); done
  "${BUILDAH[@]}" bud --isolation chroot --layers=false "${mounts[@]}" \
    --build-arg CPU_BASE="$BASE_IMAGE" -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log" >&2; exit 1; }
  # The size: the image's root filesystem as it unpacks (buildah prints sizes only rounded, in words).
  local ctr mnt mb
  ctr=$("${BUILDAH[@]}" from "$IMAGE")
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  mb=$(du -sm "$mnt" | cut -f1)
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" rm "$ctr" >/dev/null
  say "built $IMAGE in $((SECONDS - start))s: ${mb} MB unpacked (budget ${BUDGET_MB} MB)"
  [ "$mb" -le "$BUDGET_MB" ] || { say "image is over its budget"; exit 1; }
}

# Run a command in the image the way a restricted pod runs it: uid 10001, the root filesystem
# read-only, only the declared volume (/var/cache/moderator) writable, host network (loopback
# broker). buildah run has no read-only root, so this mounts the image and enters it in a private
# mount namespace.
ro_run() {
  local ctr mnt
  ctr=$("${BUILDAH[@]}" from "$IMAGE")
  mnt=$("${BUILDAH[@]}" mount "$ctr")
  local rc=0
  # --kill-child: when the caller stops unshare (moderator run in the background), the service gets SIGTERM.
  unshare --mount --fork --kill-child=SIGTERM /bin/sh -s "$mnt" "$@" <<'INNER' || rc=$?
set -e
root=$1; shift
mount --bind "$root" "$root" && mount -o remount,bind,ro "$root"
mount --rbind /dev "$root/dev" && mount --rbind /proc "$root/proc"
mount -t tmpfs -o size=64m,uid=10001,gid=10001 tmpfs "$root/var/cache/moderator"
mount --bind "$REPO_EXAMPLES" "$root/mnt"
[ -z "${PIDFILE:-}" ] || echo $$ > "$PIDFILE"  # exec keeps this pid: it is the service's
exec chroot --userspec=10001:10001 "$root" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/nonexistent \
  PYTHONDONTWRITEBYTECODE=1 MODERATOR_POLICY__CACHE_DIR=/var/cache/moderator/embeddings $RUN_ENV "$@"
INNER
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" rm "$ctr" >/dev/null
  return $rc
}

check() {
  need buildah
  export REPO_EXAMPLES=$REPO/examples RUN_ENV=""
  local out
  # The image's own user, from its configuration, as buildah run starts it.
  local ctr uid
  ctr=$("${BUILDAH[@]}" from "$IMAGE")
  uid=$("${BUILDAH[@]}" run --isolation chroot "$ctr" -- python3 -c 'import os; print(os.getuid())')
  "${BUILDAH[@]}" rm "$ctr" >/dev/null
  [ "$uid" = 10001 ] || { say "the image runs as uid $uid, not 10001"; exit 1; }
  say "check: runs as uid $uid"

  # (a) scan a labelled example: a knife is blocked, a benign picture allowed, from the bundled model and policy.
  local knife benign
  knife=$(awk -F, '$2=="knife" && $7=="test" {print $1; exit}' examples/labels.csv)
  benign=$(awk -F, '$6=="" && $7=="test" {print $1; exit}' examples/labels.csv)
  out=$(ro_run moderator scan "/mnt/$knife" "/mnt/$benign" --json 2>"$WORK/scan.err")
  python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(line) for line in sys.argv[1].splitlines()]
assert len(rows) == 2, rows
assert rows[0]["decision"] == "block" and any(c["name"] == "weapons" and c["fired"] for c in rows[0]["categories"]), rows[0]
assert rows[1]["decision"] == "allow", rows[1]
PY
  if grep -q "not writable" "$WORK/scan.err"; then say "a cache path is not writable:"; cat "$WORK/scan.err" >&2; exit 1; fi
  say "check: scan blocked the knife, allowed the benign picture, read-only root, cache on the declared volume"

  # (c) the root filesystem really is read-only to the service: writing anywhere but the volume fails.
  ro_run python3 -c '
import pathlib, sys
for p in ("/app/x", "/tmp/x", "/opt/venv/x"):
    try:
        pathlib.Path(p).write_text("x"); sys.exit(f"{p} was writable")
    except OSError:
        pass
pathlib.Path("/var/cache/moderator/ok").write_text("x")'
  say "check: nothing but /var/cache/moderator is writable"

  # (b) moderator run in the image against a real broker on loopback: verdicts come back.
  run_against_broker
}

run_against_broker() {
  local port=${IMAGE_KAFKA_PORT:-19592} data="$WORK/kafka-data" log="$WORK/run.log" pidfile="$WORK/service.pid"
  local kafka=(env KAFKA_PORT="$port" KAFKA_DATA_DIR="$data" deploy/local/kafka.sh)
  "${kafka[@]}" stop >/dev/null 2>&1 || true
  rm -rf "$data" "$pidfile"  # a fresh broker: no verdicts from an earlier run to count
  "${kafka[@]}" start >/dev/null
  # Whatever happens below, the service and the broker are stopped (the service drains on SIGTERM).
  stop_all() {
    if [ -s "$pidfile" ]; then
      local pid; pid=$(cat "$pidfile")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
    "${kafka[@]}" stop >/dev/null 2>&1 || true
  }
  trap stop_all EXIT
  local bootstrap=127.0.0.1:$port
  # Telemetry on 19599: the broker holds port+1 (its controller) to port+3.
  export RUN_ENV="MODERATOR_KAFKA__BOOTSTRAP_SERVERS=$bootstrap MODERATOR_KAFKA__INPUT_TOPICS=img-in MODERATOR_KAFKA__VERDICT_TOPIC=img-verdicts MODERATOR_KAFKA__DEAD_LETTER_TOPIC=img-dlq MODERATOR_KAFKA__GROUP_ID=image-ci MODERATOR_TELEMETRY__PORT=19599"
  ro_run moderator topics create --partitions 2 >"$WORK/topics.log" 2>&1 || { cat "$WORK/topics.log" >&2; exit 1; }
  PIDFILE=$pidfile ro_run moderator run >"$log" 2>&1 &
  local files=() n=12
  mapfile -t files < <(awk -F, 'NR > 1 {print "examples/" $1}' examples/labels.csv | head -n "$n")
  kcat -P -b "$bootstrap" -t img-in "${files[@]}"
  printf 'not an image' | kcat -P -b "$bootstrap" -t img-in
  local verdicts dead
  verdicts=$(timeout 180 kcat -C -b "$bootstrap" -t img-verdicts -o beginning -c "$n" -q 2>/dev/null || true)
  dead=$(timeout 60 kcat -C -b "$bootstrap" -t img-dlq -o beginning -c 1 -q 2>/dev/null || true)
  python3 - "$verdicts" "$dead" "$n" <<'PY' || { tail -30 "$log" >&2; exit 1; }
import json, sys
verdicts = [json.loads(line) for line in sys.argv[1].splitlines() if line.strip()]
n = int(sys.argv[3])
assert len(verdicts) == n, f"{len(verdicts)} verdicts of {n}"
assert all(v["decision"] in ("allow", "review", "block") for v in verdicts)
assert sys.argv[2].strip(), "no dead letter for the message that is not an image"
print(f"image: check: moderator run in the image gave {n} verdicts "
      f"({sum(v['decision'] == 'block' for v in verdicts)} block) and one dead letter through the real broker", file=sys.stderr)
PY
  stop_all
  trap - EXIT
}

case "${1:-all}" in
  base) base ;;
  build) build ;;
  check) check ;;
  all) base; build; check ;;
  *) echo "usage: $0 base|build|check|all" >&2; exit 2 ;;
esac
