"""Memory a replica spends on the semantic cache index at 10k and 100k entries.

On Redis 7 (no vector search) every replica keeps the whole semantic index in
process (router/cache/index.py: float32 vectors, 256 sign bits, expiry, key);
on Redis 8 / Redis Stack the vectors stay in Redis (router/cache/vsearch.py).
Each size is filled in a fresh process with random unit vectors and 64-char
keys, as the cache writes them; the figure is the RSS growth over the empty
index, and bytes per entry.

    .venv/bin/python bench/index_memory.py                  # 10k and 100k, dim 384
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import hashlib, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
from router.cache.index import VectorIndex

def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024

n, dim = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
idx = VectorIndex(dim=dim, max_rows=n)
vecs = rng.standard_normal((1000, dim)).astype(np.float32)
before = rss()
now = time.time()
for i in range(n):
    key = hashlib.sha256(str(i).encode()).hexdigest()
    idx.add(key, "tenant|auto", vecs[i % 1000] + np.float32(i % 7) * 1e-3, expires=now + 3600, created=now, tenant="tenant", alias="auto")
after = rss()
print(n, after - before)
"""


def main() -> None:
    print(f"{'entries':>8} {'RSS growth MB':>14} {'bytes/entry':>12}")
    for n in (10_000, 100_000):
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), "384", str(ROOT)], capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        _, grew = out.stdout.split()
        print(f"{n:>8} {int(grew) / 2**20:14.1f} {int(grew) / n:12.0f}")


if __name__ == "__main__":
    main()
