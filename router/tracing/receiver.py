"""A loopback OTLP/HTTP trace receiver for tests and benchmarks (the tracing
twin of router.upstreams.fake_server): it decodes each protobuf
ExportTraceServiceRequest the SDK's exporter posts to /v1/traces and keeps the
spans as plain dicts.

    with OtlpReceiver() as rx:   # rx.endpoint -> OTEL_EXPORTER_OTLP_ENDPOINT
        ...
        rx.wait_for(lambda spans: len(spans) >= 5, timeout=5)
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _any(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_any(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


def decode(body: bytes) -> list[dict[str, Any]]:
    req = ExportTraceServiceRequest.FromString(body)
    out = []
    for rs in req.resource_spans:
        resource = {kv.key: _any(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for sp in ss.spans:
                out.append(
                    {
                        "name": sp.name,
                        "trace_id": sp.trace_id.hex(),
                        "span_id": sp.span_id.hex(),
                        "parent_id": sp.parent_span_id.hex() or None,
                        "kind": KINDS.get(sp.kind, str(sp.kind)),
                        "attributes": {kv.key: _any(kv.value) for kv in sp.attributes},
                        "status": sp.status.code,  # 0 unset, 1 ok, 2 error
                        "start_ns": sp.start_time_unix_nano,
                        "end_ns": sp.end_time_unix_nano,
                        "resource": resource,
                        "scope": ss.scope.name,
                    }
                )
    return out


class OtlpReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, status: int = 200) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self.status = status  # answer this (e.g. 503 to play a failing collector)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                with receiver._lock:
                    receiver.requests += 1
                    if self.path == "/v1/traces" and receiver.status == 200:
                        receiver.spans.extend(decode(raw))
                body = ExportTraceServiceResponse().SerializeToString()
                self.send_response(receiver.status if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, ready: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            spans = self.snapshot()
            if ready(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)


def main() -> None:
    """`python -m router.tracing.receiver --port N`: receive until SIGTERM/SIGINT,
    then print `spans=<n> traces=<m>` (benchmarks run it in its own process so
    decoding does not count against the gateway's CPU)."""
    import argparse
    import signal

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=4318)
    args = ap.parse_args()
    rx = OtlpReceiver(port=args.port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"listening {rx.endpoint}", flush=True)
    stop.wait()
    rx.stop()
    spans = rx.snapshot()
    print(f"spans={len(spans)} traces={len({s['trace_id'] for s in spans if s['kind'] == 'server'})}", flush=True)


if __name__ == "__main__":
    main()
