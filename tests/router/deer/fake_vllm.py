"""An in-process vLLM stand-in (an httpx transport) that plays a fixed token
script, for the DEER differential test: thousands of requests, no sockets.

As strict as vLLM's `/v1/completions` where DEER depends on it:
- a thinking stream continues the script from wherever the prompt leaves it
  (the prompt must end on a token boundary of the script), one event per
  token; `max_tokens` ends it with finish_reason "length" on the last token's
  event; a stop string ends it with "stop", the text before the stop string
  sent and the stop string withheld (`stop_reason` names it);
- a probe (non-streaming) writes its scripted tokens until one of the request's
  stop strings appears in the text or `max_tokens` is reached; the logprobs
  (`tokens`, `token_logprobs`) include the token that completed the stop
  string, the text does not;
- more than 4 stop strings is an HTTP 400, as vLLM's default.
`lockstep`: after sending a transition token, the thinking stream waits until
the driver has decided on that transition's probe (a probe faster than the
next token), unless the driver has used up its probes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

CLOSE = "</think>"
MARK = "\n**Final Answer**\n"


class FakeVllm(httpx.AsyncBaseTransport):
    def __init__(
        self,
        thinking: list[str],
        probes: list[tuple[list[str], list[float]]],
        *,
        lockstep: bool = False,
        decided: Callable[[], int] = lambda: 0,
        max_probes: int = 10,
    ) -> None:
        self.thinking = thinking
        self.probes = probes
        self.lockstep = lockstep
        self.decided = decided
        self.max_probes = max_probes
        self.base: str | None = None
        self.probe_requests: list[dict[str, Any]] = []
        self.lockstep_timeouts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if not request.url.path.endswith("/completions"):
            return httpx.Response(404, json={"error": {"message": "not found"}})
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        if len(stops) > 4:
            return httpx.Response(400, json={"error": {"message": "too many stop strings"}})
        prompt: str = body["prompt"]
        if not body.get("stream"):
            return self._probe(prompt, body, stops)
        if CLOSE in prompt:  # the answer
            return self._sse([(" \\boxed{4}", "stop")])
        if self.base is None:
            self.base = prompt
        so_far = prompt[len(self.base) :]
        i, acc = 0, ""
        while len(acc) < len(so_far) and i < len(self.thinking):
            acc += self.thinking[i]
            i += 1
        assert acc == so_far, f"the continuation does not match the script at a token boundary: {so_far!r}"
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_Stream(self._think(i, body, stops))
        )

    def _probe(self, prompt: str, body: dict[str, Any], stops: list[str]) -> httpx.Response:
        # the thinking so far, then the answer suffix ("\n**Final Answer**\n" + the kind's opening)
        assert self.base is not None and prompt.startswith(self.base) and MARK in prompt
        self.probe_requests.append(body)
        before = prompt[len(self.base) : prompt.rindex(MARK)]
        step = before.count("Wait") + 1  # the probe at the step-th transition
        tokens, lps = self.probes[step - 1] if step <= len(self.probes) else (["{", "x"], [0.0, -5.0])
        out_t: list[str] = []
        out_l: list[float] = []
        text = ""
        finish = "length"
        for tok, lp in zip(tokens, lps):
            if len(out_t) >= int(body.get("max_tokens") or 16):
                break
            out_t.append(tok)
            out_l.append(lp)
            text += tok
            hit = next((s for s in stops if s in text), None)
            if hit is not None:
                text = text[: text.index(hit)]
                finish = "stop"
                break
        else:
            finish = "stop" if len(out_t) < int(body.get("max_tokens") or 16) else "length"
        choice = {
            "index": 0,
            "text": text,
            "finish_reason": finish,
            "logprobs": {"tokens": out_t, "token_logprobs": out_l},
        }
        return httpx.Response(
            200,
            json={
                "id": "p",
                "object": "text_completion",
                "choices": [choice],
                "usage": {"completion_tokens": len(out_t)},
            },
        )

    async def _think(self, start: int, body: dict[str, Any], stops: list[str]) -> AsyncIterator[bytes]:
        max_tokens = int(body["max_tokens"])
        sent_transitions = "".join(self.thinking[:start]).count("Wait")
        for n, tok in enumerate(self.thinking[start:], 1):
            hit = next((s for s in stops if s in tok), None)
            if hit is not None:
                yield _event(tok[: tok.index(hit)], "stop", hit)
                break
            last = n >= max_tokens
            yield _event(tok, "length" if last else None)
            if last:
                break
            await asyncio.sleep(0)
            if self.lockstep and "Wait" in tok:
                sent_transitions += 1
                await self._wait_decided(sent_transitions)
        yield b"data: [DONE]\n\n"

    async def _wait_decided(self, transitions: int) -> None:
        """Give the driver time to send this transition's probe (if it probes here),
        then hold the next token until it has decided on every probe sent."""
        if len(self.probe_requests) < self.max_probes:
            for _ in range(2000):
                if len(self.probe_requests) >= transitions:
                    break
                await asyncio.sleep(0)
        for _ in range(20000):
            if self.decided() >= len(self.probe_requests):
                return
            await asyncio.sleep(0)
        self.lockstep_timeouts += 1

    def _sse(self, events: list[tuple[str, str | None]]) -> httpx.Response:
        async def gen() -> AsyncIterator[bytes]:
            for text, finish in events:
                yield _event(text, finish)
            yield b"data: [DONE]\n\n"

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Stream(gen()))


def _event(text: str, finish: str | None, stop_reason: str | None = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    if finish:
        choice["stop_reason"] = stop_reason
    return ("data: " + json.dumps({"id": "c", "object": "text_completion", "choices": [choice]}) + "\n\n").encode()


class _Stream(httpx.AsyncByteStream):
    def __init__(self, agen: AsyncIterator[bytes]) -> None:
        self.agen = agen

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.agen:
            yield chunk

    async def aclose(self) -> None:
        await self.agen.aclose()  # type: ignore[attr-defined]
