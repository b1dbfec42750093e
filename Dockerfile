# The image deploy/kubernetes/ runs: a non-root user (10001), nothing written
# under / at run time (readOnlyRootFilesystem), the int8 ONNX embedder exported at
# build time so replicas start fast and need no writable model cache.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY router router
COPY policies policies
COPY calibrate calibrate
COPY models models
COPY examples examples
# set PIP_EXTRA_INDEX_URL at build time to take a CPU-only torch wheel
ARG PIP_EXTRA_INDEX_URL=
RUN pip install --no-cache-dir -e .
# 7-bit int8 weights run right on CPUs with and without VNNI, so the export made
# on the build machine is the one every node loads (the name depends on this)
ENV THINKGATE_CACHE=/opt/thinkgate-cache THINKGATE_ONNX_REDUCE_RANGE=1
RUN thinkgate calibrate export-onnx && python -m router.embedding.static

FROM python:3.11-slim
RUN groupadd --gid 10001 thinkgate && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin thinkgate
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
