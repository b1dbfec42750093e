"""Reading the gateway's outcome log (router/learning/outcome_log.py) as training
data: the local JSONL file or the Redis stream, given to `--outcomes` as a path
or as `redis://host:port/db?stream=thinkgate:outcomes` (the default stream key).

A log record is an outcome row (ARCHITECTURE.md) plus provenance (tenant,
route, source, difficulty, artifact, ts). Records logged with
`decisions.store_prompt` off carry no prompt text, only `prompt_sha256` and the
sentence embedding: training needs the text (cheap and lexical features, the
full routing vector), so they are skipped with a count on stderr; they still
serve the dashboard's quality view, which uses the logged difficulty."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from calibrate.outcomes import OutcomeError, Outcomes, score

DEFAULT_STREAM = "thinkgate:outcomes"
_EXTRA = ("fast_cost", "strong_cost", "fast_tokens", "strong_tokens", "fast_confidence", "group", "tenant", "source", "route")


def is_log(source: str) -> bool:
    """A Redis URL, or a JSONL file whose first record has the log's provenance fields."""
    if source.startswith(("redis://", "rediss://", "unix://")):
        return True
    try:
        with open(source, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    return isinstance(rec, dict) and "judge_version" in rec
    except (OSError, ValueError):
        return False
    return False


def _redis_records(url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import redis

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    key = query.pop("stream", DEFAULT_STREAM)
    client = redis.Redis.from_url(urlunsplit((*parts[:3], urlencode(query), parts.fragment)), socket_timeout=30)
    try:
        last = "-"
        while True:  # oldest first, in pages
            rows = client.xrange(key, min=last, max="+", count=5000)
            if last != "-":
                rows = rows[1:]  # the page starts at the last id read
            if not rows:
                return
            for entry_id, fields in rows:
                yield f"{key}#{entry_id.decode()}", json.loads(fields[b"r"])
            last = rows[-1][0].decode()
    except redis.RedisError as e:
        raise OutcomeError(f"{url}: cannot read the outcome stream {key!r} ({type(e).__name__}: {e})") from None
    finally:
        client.close()


def _file_records(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                print(f"{path}:{n}: skipped a line that is not JSON (cut by a crash?)", file=sys.stderr)
                continue
            yield f"{path}:{n}", rec


def records(source: str) -> Iterable[tuple[str, dict[str, Any]]]:
    return _redis_records(source) if source.startswith(("redis://", "rediss://", "unix://")) else _file_records(source)


def read_log(source: str, *, tenant: str | None = None, quiet: bool = False) -> Outcomes:
    out = Outcomes([], [], [], [], [])
    seen: set[str] = set()
    no_prompt = other_tenant = 0
    for where, rec in records(source):
        if not isinstance(rec, dict):
            raise OutcomeError(f"{where}: each record must be a JSON object")
        if tenant is not None and rec.get("tenant") != tenant:
            other_tenant += 1
            continue
        prompt = rec.get("prompt")
        if not prompt:
            no_prompt += 1
            continue
        rid = str(rec.get("id", where))
        if rid in seen:  # the same request graded twice (a replayed stream): keep the first
            continue
        seen.add(rid)
        out.ids.append(rid)
        out.prompts.append(prompt)
        out.fast.append(score(rec.get("fast"), f"{where}: fast"))
        out.strong.append(score(rec.get("strong"), f"{where}: strong"))
        out.extra.append({k: rec[k] for k in _EXTRA if rec.get(k) is not None})
    if not quiet and (no_prompt or other_tenant):
        print(
            f"{source}: {len(out)} outcomes; skipped {no_prompt} without prompt text (logged with decisions.store_prompt "
            f"off) and {other_tenant} of other tenants",
            file=sys.stderr,
        )
    if not out.ids:
        raise OutcomeError(f"{source}: no usable outcomes (tenant {tenant!r}; {no_prompt} records had no prompt text)")
    return out

