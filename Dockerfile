FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY router router
COPY policies policies
COPY calibrate calibrate
COPY models models
COPY examples examples
# set PIP_EXTRA_INDEX_URL at build time to take a CPU-only torch wheel
ARG PIP_EXTRA_INDEX_URL=
RUN pip install --no-cache-dir -e .
# export the int8 ONNX embedder once, at build time, so replicas start fast
RUN thinkgate calibrate export-onnx
EXPOSE 8000
CMD ["thinkgate", "serve", "--config", "/etc/thinkgate/config.yaml", "--host", "0.0.0.0"]
