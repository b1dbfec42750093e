"""The cheap features side by side in one process: every count by its own regex scan
(what the artifacts were trained on: `reference` in tests/policies/test_cheap_features_fast.py,
which checks that both give the same features) against policies/features.py's path
(whole-word patterns counted from the words, the code and reasoning patterns split into
word, literal and gated regex parts). Real Arena-Hard v2 prompts cut to 16/128/256 word
pieces, interleaved, p50 of 600 calls each.

    .venv/bin/python bench/cheap_features.py"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import routing  # noqa: E402

import policies.features as f  # noqa: E402
from tests.policies.test_cheap_features_fast import reference  # noqa: E402


def main() -> int:
    for n in (16, 128, 256):
        convs = [[{"role": "user", "content": t}] for t in routing.prompts_of(n, 16)]
        a: list[float] = []
        b: list[float] = []
        for i in range(600):
            c = convs[i % len(convs)]
            t0 = time.perf_counter()
            reference(c)
            a.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            f.cheap_features(c)
            b.append(time.perf_counter() - t0)
        print(f"{n:>4} tokens: cheap features p50, a regex scan per count {1e3 * statistics.median(a):.3f} ms, "
              f"policies/features.py {1e3 * statistics.median(b):.3f} ms ({statistics.median(a) / statistics.median(b):.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
