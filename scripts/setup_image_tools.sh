#!/usr/bin/env bash
# What tests/deploy/test_image.py, test_compose.py and tests/packaging/ need:
#   apt:  buildah + podman (build and run the image without a Docker daemon), runc
#         (crun fails here: setrlimit), debootstrap (a local Debian base image, no
#         registry needed), uidmap + fuse-overlayfs (rootless hosts)
#   venv: podman-compose, build, twine, uv, in a venv of their own so they never move
#         the gateway's pins.
# Idempotent: a second run only checks. Prints the venv's path last.
#
#   scripts/setup_image_tools.sh
#   THINKGATE_IMAGE_VENV=... scripts/setup_image_tools.sh
set -euo pipefail

PY=${PYTHON:-python3}
VENV=${THINKGATE_IMAGE_VENV:-$HOME/.cache/thinkgate-venvs/image}
want="podman-compose==1.6.0 build==1.6.1 twine==7.0.0 uv==0.13.10"
STAMP="$VENV/.thinkgate-image"

missing=()
for pkg in buildah podman runc debootstrap uidmap fuse-overlayfs; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && [[ -x "$VENV/bin/podman-compose" && -x "$VENV/bin/uv" ]]; then
  echo "image tools venv ok: $VENV" >&2
else
  echo "installing $want into $VENV..." >&2
  rm -f "$STAMP"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip -q --disable-pip-version-check install $want 2> >(grep -v "^WARNING: Location " >&2)
  echo "$want" > "$STAMP"
fi
echo "THINKGATE_IMAGE_VENV=$VENV"
