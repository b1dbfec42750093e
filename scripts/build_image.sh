#!/usr/bin/env bash
# Builds the thinkgate image with buildah, on a machine with no container registry:
#   1. a local base image, Debian bookworm by debootstrap (its python3 is 3.11, like
#      the official python:3.11 image the Dockerfile names by default), imported once
#      into podman's store as $THINKGATE_IMAGE_BASE (default localhost/thinkgate-base:bookworm);
#   2. a staged build context: the checkout's files (tracked and untracked, not
#      ignored) plus the wheels pip's find-links directories hold (the CPU torch), in
#      deploy/image/wheels, which the Dockerfile bind-mounts;
#   3. buildah bud with pip's index configuration and CA certificates as build
#      secrets (read during the build, never written to a layer).
# The image is tagged by a hash of everything that goes into it, so a second run with
# nothing changed builds nothing (no per-step layer cache: committing each step of a
# 2 GB build stage cost more than it saved on a fresh CI machine). The last line printed is the image reference.
#
#   scripts/build_image.sh                     build (or reuse) localhost/thinkgate:<hash>
#   THINKGATE_IMAGE_BASE=python:3.11-slim-bookworm scripts/build_image.sh   another base
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${THINKGATE_IMAGE_BASE:-localhost/thinkgate-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
for tool in buildah podman; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup_image_tools.sh" >&2; exit 2; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/thinkgate-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# -- 1. the base ------------------------------------------------------------------
if ! podman image exists "$BASE"; then
  if [[ "$BASE" != localhost/* ]]; then
    echo "base $BASE is not in podman's store and no registry is used here: pull it first" >&2
    exit 2
  fi
  command -v debootstrap >/dev/null || { echo "debootstrap is missing: run scripts/setup_image_tools.sh" >&2; exit 2; }
  echo "building the base $BASE with debootstrap (one time, a few minutes)..." >&2
  # python3-venv: the Dockerfile makes a venv; ca-certificates: TLS at run time
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
fi

# -- 2. the build context ---------------------------------------------------------
# only what the Dockerfile copies (so an edit elsewhere, say to tests/, neither rebuilds
# nor enters the context), as git sees it: tracked and untracked files, not ignored ones
CONTEXT=(Dockerfile .dockerignore pyproject.toml README.md requirements.lock requirements-torch.lock
         router policies calibrate models examples deploy/image)
ctx="$work/context"
mkdir -p "$ctx"
git ls-files -z --cached --others --exclude-standard -- "${CONTEXT[@]}" | while IFS= read -r -d '' f; do
  if [[ -e "$f" ]]; then printf '%s\0' "$f"; fi
done | xargs -0 cp --parents -t "$ctx"
py=$(command -v python3)
# wheels from pip's local find-links directories (the CPU torch): hard links where
# the filesystem allows, copies elsewhere
links=$({ "$py" -m pip config list 2>/dev/null | sed -n "s/^.*find-links='\(.*\)'$/\1/p"; echo "${PIP_FIND_LINKS:-}"; } \
  | tr ' ' '\n' | { grep -v -e '://' -e '^$' || true; } | sort -u)
for dir in $links; do
  for whl in "$dir"/torch-*.whl; do
    [[ -f "$whl" ]] || continue
    cp -l "$whl" "$ctx/deploy/image/wheels/" 2>/dev/null || cp "$whl" "$ctx/deploy/image/wheels/"
  done
done

# a local CPU torch wheel: no need to reach the PyTorch index (often unreachable here)
torch_arg=()
compgen -G "$ctx/deploy/image/wheels/torch-*.whl" >/dev/null && torch_arg=(--build-arg TORCH_INDEX=)

# -- 3. the secrets: pip's network settings only (local paths mean nothing inside) --
{
  echo "[global]"
  "$py" -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.\(index-url\|extra-index-url\|trusted-host\|timeout\|default-timeout\)='\(.*\)'$/\1 \2/p" \
    | while read -r key values; do
      keep=$(tr ' ' '\n' <<<"$values" | { grep -v '^file:' || true; } | tr '\n' ' ')
      if [[ -n "${keep// /}" ]]; then echo "$key = $keep"; fi
    done | sort -u
} >"$work/pip.conf"
ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[[ -s "$ca" ]] && cp "$ca" "$work/ca.crt" || : >"$work/ca.crt"

# -- the tag: a hash of the context, the base and the secrets' content -----------------
base_id=$(podman image inspect --format '{{.Id}}' "$BASE")
hash=$(cd "$ctx" && { find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$base_id"; } | sha256sum | cut -c1-16)
ref="localhost/thinkgate:$hash"
if podman image exists "$ref"; then
  echo "image $ref is up to date" >&2
else
  echo "building $ref on $BASE..." >&2
  start=$(date +%s)
  buildah bud --isolation chroot --network host \
    --build-arg "BASE=$BASE" "${torch_arg[@]}" \
    --secret "id=pipconf,src=$work/pip.conf" --secret "id=cacert,src=$work/ca.crt" \
    -t "$ref" -f "$ctx/Dockerfile" "$ctx" >&2
  echo "built $ref in $(( $(date +%s) - start )) s" >&2
fi
echo "$ref"
