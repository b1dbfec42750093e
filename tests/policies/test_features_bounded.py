"""Issue 23, finding 2: the cheap features read a bounded part of a prompt, so a 4 MB
prompt costs what a FEATURE_CHARS (4,096-character) one does (before: ~20 regular expressions over
the whole text, seconds), while its size still shows in the size features."""

from __future__ import annotations

import math
import re
import time

from policies.features import CHEAP_FEATURE_NAMES, FEATURE_CHARS, cheap_features


def test_a_4mb_prompt_costs_what_a_bounded_one_does() -> None:
    unit = "the quick brown fox computes 12 * 34 = 408; why? "
    huge = [{"role": "user", "content": unit * 80_000}]  # ~3.9 MB
    small = [{"role": "user", "content": (unit * 400)[:FEATURE_CHARS]}]
    t = time.perf_counter()
    big_f = cheap_features(huge)
    took = time.perf_counter() - t
    assert took < 0.5, took  # before: 38 s on this machine under load (9 s in the issue)
    f = dict(zip(CHEAP_FEATURE_NAMES, big_f))
    assert f["log_chars"] == math.log1p(len(huge[0]["content"]))
    # counts are scaled from the sample: close to the true count (these are logs)
    words = len(re.findall(r"\w+", huge[0]["content"]))  # what the feature counts
    assert abs(f["log_words"] - math.log1p(words)) < 0.05
    # a prompt within the bound gets exactly the features of its whole text
    assert cheap_features(small) == cheap_features([{"role": "user", "content": small[0]["content"]}])
