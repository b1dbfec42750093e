"""Where the time of a gateway's first requests goes: start `thinkgate serve` (the embedded
default unless --config), time it to /readyz, then send the same prompts the way a new
user does (no max_tokens) and print each request's wall time, route, reason and the
decision record's steps (router/pipeline/timings.py), plus the server's upstream log lines.

    python bench/first_request.py                       # "Say hello in French." x2 on auto
    python bench/first_request.py --prompt "What is 7 * 8?" --n 3 --alias auto

The figures in README "Where a request's time went" come from this script.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="gateway YAML (default: the embedded default)")
    ap.add_argument("--prompt", default="Say hello in French.", help="the user turn sent")
    ap.add_argument("--alias", default="auto", help="the model alias asked for")
    ap.add_argument("--n", type=int, default=2, help="requests, one after the other")
    ap.add_argument("--max-tokens", type=int, help="send this max_tokens (default: none, as a new user does)")
    args = ap.parse_args()

    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="tg-first-")) / "serve.log"
    cmd = [sys.executable, "-m", "router.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if args.config:
        cmd += ["--config", args.config]
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                print(log.read_text()[-3000:], file=sys.stderr)
                return 1
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        print(f"start -> /readyz 200: {time.perf_counter() - t0:.1f} s")
        body: dict = {"model": args.alias, "messages": [{"role": "user", "content": args.prompt}]}
        if args.max_tokens:
            body["max_tokens"] = args.max_tokens
        with httpx.Client(base_url=url, timeout=900) as c:
            for i in range(args.n):
                t = time.perf_counter()
                r = c.post("/v1/chat/completions", json=body, headers={"x-thinkgate-debug": "1"})
                wall = time.perf_counter() - t
                rec = r.json().get("thinkgate", {})
                steps = ", ".join(f"{k} {v / 1000:.2f}s" for k, v in (rec.get("steps") or {}).items())
                answer = ((r.json().get("choices") or [{}])[0].get("message") or {}).get("content") or ""
                print(f"request {i + 1}: {wall:.1f} s, route {r.headers.get('x-thinkgate-route')}, "
                      f"reason {r.headers.get('x-thinkgate-reason')}, tokens {rec.get('prompt_tokens')}+{rec.get('completion_tokens')}, "
                      f"total_ms {rec.get('total_ms')}\n  steps: {steps}\n  answer: {answer[:120]!r}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [line for line in log.read_text().splitlines() if "thinkgate.upstream" in line or "slow request" in line or "starting local" in line]
    print("server log:\n  " + "\n  ".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
