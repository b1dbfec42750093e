"""The cheap features' structure counts, side by side in one process: one regex scan
per pattern (what the artifacts were trained on) against the word-count path that
policies/features.py now takes (tests/policies/test_cheap_features_fast.py checks that
both give the same counts). Real Arena-Hard v2 prompts cut to 16/128/256 word pieces,
interleaved, p50 of 600 calls each.

    .venv/bin/python bench/cheap_features.py"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import routing  # noqa: E402

import policies.features as f  # noqa: E402


def by_regex(text: str) -> tuple[list[int], int]:
    return [len(r.findall(text)) for r in f._STRUCTURE_RE.values()], sum(c.isdigit() for c in text)


def by_words(text: str) -> tuple[list[int], int]:
    return f._structure_counts(text, f._WORD.findall(text)), sum(map(str.isdigit, text))


def main() -> int:
    for n in (16, 128, 256):
        texts = routing.prompts_of(n, 16)
        a: list[float] = []
        b: list[float] = []
        for i in range(600):
            t = texts[i % len(texts)]
            t0 = time.perf_counter()
            by_regex(t)
            a.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            by_words(t)
            b.append(time.perf_counter() - t0)
        print(f"{n:>4} tokens: structure + digit counts p50, regex per pattern {1e3 * statistics.median(a):.3f} ms, "
              f"from the words {1e3 * statistics.median(b):.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
