# syntax=docker/dockerfile:1
# The image deploy/kubernetes/ runs: a non-root user (10001), nothing written
# under / at run time (readOnlyRootFilesystem), the int8 ONNX embedder exported at
# build time so replicas start fast and need no writable model cache.
#
# BASE: any Debian-family image whose python3 is 3.11 with venv. The default is the
# official image; scripts/build_image.sh builds on a debootstrap'd Debian bookworm
# (python3 3.11) where no registry is reachable. Both stages use the same base, so
# the venv's interpreter link resolves in the final stage.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1
# The dependencies first (a code change keeps this layer), exactly as locked, hashes
# required. Wheels the build machine already holds (the CPU torch) arrive through a
# bind mount of deploy/image/wheels, the package index and CA certificates as build
# secrets: none of them is left in a layer. torch (CPU build, from that mount or the
# PyTorch CPU index; TORCH_INDEX= builds offline from the mount) is needed only for the
# ONNX export below and removed after it.
COPY requirements.lock requirements-torch.lock ./
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN --mount=type=bind,source=deploy/image/wheels,target=/wheels \
    --mount=type=secret,id=pipconf \
    --mount=type=secret,id=cacert \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \
    pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock \
    && pip install --no-cache-dir --require-hashes --no-deps --find-links /wheels ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -r requirements-torch.lock
COPY pyproject.toml README.md ./
COPY router router
COPY policies policies
COPY calibrate calibrate
COPY models models
COPY examples examples
# setuptools comes from the lock: no index is needed to install thinkgate itself
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e . && pip check
# 7-bit int8 weights run right on CPUs with and without VNNI, so the export made
# on the build machine is the one every node loads (the name depends on this)
ENV THINKGATE_CACHE=/opt/thinkgate-cache THINKGATE_ONNX_REDUCE_RANGE=1
# The export's directory is named from the weights' size and whole-second mtime; a
# COPY to the final stage may round a fractional mtime up (seen with buildah), so the
# weights get a whole-second mtime first and the name holds in the final stage.
RUN find /opt/venv -name model.safetensors -exec sh -c 'touch -d "@$(stat -c %Y "$1")" "$1"' _ {} \; \
    && thinkgate calibrate export-onnx && python -m router.embedding.static && pip uninstall -y torch

FROM ${BASE}
# the manifests' user, written directly: a minimal base may lack useradd
RUN echo 'thinkgate:x:10001:10001::/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'thinkgate:x:10001:' >> /etc/group
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY --from=build --chown=10001:10001 /opt/thinkgate-cache /opt/thinkgate-cache
WORKDIR /app
# HOME=/tmp: the only writable path (an emptyDir in Kubernetes); no .pyc writes;
# litellm reads its bundled price map instead of fetching one at import
ENV PATH=/opt/venv/bin:$PATH HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    THINKGATE_CACHE=/opt/thinkgate-cache THINKGATE_ONNX_REDUCE_RANGE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["thinkgate", "serve", "--config", "/etc/thinkgate/config.yaml", "--host", "0.0.0.0", "--port", "8000"]
