"""Issue 23, finding 6: the largest decision record (JSON bytes) after requests with a 1 MB
model name and a 1 MB user. `python bench/record_bytes.py`"""
import asyncio
import json

import httpx

from router import config
from router.app import create_app
from router.decisions.log import MemoryDecisionLog
from router.upstreams.fake import FakeUpstream


async def main():
    s = config.from_dict({"models": {"fast": {"provider": "fake"}, "reasoning": {"provider": "fake", "reasoning": True}},
                          "routes": {"auto": {}}, "selfref": {"enabled": False}, "classifier": {"enabled": False}})
    log = MemoryDecisionLog(s.decisions)
    app = create_app(s, upstreams={"fast": FakeUpstream("fast"), "reasoning": FakeUpstream("reasoning")}, log_sink=log)
    big = "m" * 1_000_000
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for body in ({"model": big, "messages": [{"role": "user", "content": "hi"}]},
                     {"model": "auto", "user": big, "messages": [{"role": "user", "content": "hi"}]}):
            r = await c.post("/v1/chat/completions", json=body)
            print("status", r.status_code)
    await asyncio.sleep(0.5)  # records are written after the reply
    print("largest record bytes:", max(len(json.dumps(r)) for r in await log.recent(100)))
asyncio.run(main())
