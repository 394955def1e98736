#!/usr/bin/env bash
# System packages the tests and the demo need: Java >= 17 and Maven (the local Kafka broker),
# Prometheus and promtool (dashboard and alert-rule tests), kcat (an independent producer for the
# hostile-input tests: it writes header keys that are not UTF-8), openssl (the TLS tests make their
# certificates with it), buildah and debootstrap (CI builds and runs the container image:
# deploy/image/build.sh). Installs them with apt-get when
# missing and allowed (root on Debian/Ubuntu); otherwise says what to install.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v kcat >/dev/null || missing+=(kcat)
command -v openssl >/dev/null || missing+=(openssl)
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "system-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "system-deps: please install: ${missing[*]} (Debian/Ubuntu package names)" >&2
  exit 2
fi
