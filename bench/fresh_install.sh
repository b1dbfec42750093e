#!/usr/bin/env bash
# The README's two commands on a fresh machine, timed: a new container from the bare
# Debian base (no venv, no pip cache, no llama-cpp-python wheel, no npm cache), the
# checkout at REF copied in, then
#   serve:  scripts/install.sh, then `thinkgate serve` until /readyz answers 200
#   test:   scripts/install.sh --test (the install part of the test command; the suite
#           itself needs podman and a browser outside a container: CI times it)
# The machine's package sources are what a fresh machine of this kind has: pip's
# configuration, CA bundle, find-links and file:// indexes are mounted read-only at their
# own paths. The compiler and git are installed first and timed apart (a fresh machine
# of this kind has them; the bare base does not).
#
#   bench/fresh_install.sh serve [REF]      default REF: HEAD
#   bench/fresh_install.sh test  [REF]
# Prints one line per figure; the container is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:?serve or test}
ref=${2:-HEAD}
BASE=${THINKGATE_IMAGE_BASE:-localhost/thinkgate-base:bookworm}
podman image exists "$BASE" || scripts/build_image.sh --base-only >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/thinkgate-fresh.XXXXXX")
trap 'rm -rf "$work"' EXIT
git archive --format=tar "$ref" | tar -C "$work" -x --one-top-level=src
commit=$(git rev-parse --short "$ref")

# pip's settings and local package sources, each at its own path, read-only
mounts=()
for path in /etc/pip.conf /etc/xdg/pip "$HOME/.config/pip/pip.conf" "${PIP_CERT:-}" ${PIP_FIND_LINKS:-}; do
  [[ -n "$path" && -e "$path" ]] && mounts+=(-v "$path:$path:ro")
done
for dir in $(python3 -m pip config list 2>/dev/null | grep -o "file://[^ ']*" | sed 's|file://||; s|/simple$||' | sort -u); do
  [[ -d "$dir" ]] && mounts+=(-v "$dir:$dir:ro")
done
envs=()
for var in PIP_CERT PIP_FIND_LINKS PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK; do
  [[ -n "${!var:-}" ]] && envs+=(-e "$var=${!var}")
done

flag=""; [[ "$mode" == test ]] && flag="--test"
cat >"$work/run.sh" <<EOF
set -euo pipefail
t0=\$(date +%s)
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential git curl >/dev/null
echo "prerequisites (compiler, git; not part of the README command): \$(( \$(date +%s) - t0 )) s"
cp -r /src /thinkgate && cd /thinkgate
t0=\$(date +%s)
scripts/install.sh $flag >/tmp/install.log 2>&1 || { tail -30 /tmp/install.log; exit 1; }
echo "scripts/install.sh $flag at $commit: \$(( \$(date +%s) - t0 )) s"
if [[ "$mode" == serve ]]; then
  t0=\$(date +%s)
  .venv/bin/thinkgate serve --port 18977 >/tmp/serve.log 2>&1 &
  for _ in \$(seq 600); do
    curl -sf http://127.0.0.1:18977/readyz >/dev/null && break
    sleep 0.5
  done
  curl -sf http://127.0.0.1:18977/readyz >/dev/null || { tail -20 /tmp/serve.log; exit 1; }
  echo "thinkgate serve to /readyz: \$(( \$(date +%s) - t0 )) s"
  kill %1
fi
EOF

start=$(date +%s)
podman --runtime runc run --rm --cgroup-manager cgroupfs \
  --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --network host \
  "${mounts[@]}" "${envs[@]}" -v "$work/src:/src:ro" -v "$work/run.sh:/run.sh:ro" \
  "$BASE" bash /run.sh
echo "whole run (container start to end): $(( $(date +%s) - start )) s"
