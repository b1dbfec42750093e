"""Differential test: thinkgate's DEER controller (the real `DeerUpstream`, its
thinking loops and `policies.deer`) against an independent model of the
reference's decision rule (`reference_deer.py`), on hypothesis-generated token
scripts and probe logprobs for both families (DeepSeek-R1: arithmetic mean over
the boxed answer; Qwen3: geometric mean through `</think>`).

Required to be identical: the kept thinking (so the exit point), the exit step,
the exit reason, and every probe's confidence and exit/continue verdict.

Documented exceptions, each counted and bounded here:
- E1 (the reference probes once more when a chunk uses up the thinking budget,
  not at a transition, and leaves whatever that probe says): thinkgate saves the
  probe; the exit point is the same and the reason is "budget" on both sides.
  That extra reference probe is left out of the per-probe comparison.
- E2 (concurrent probing's race at a natural end): with the thinking stream
  open beside the probe, the stream can reach its end (`</think>` or the
  budget) before the probe's verdict; thinkgate then keeps all the thinking.
  Bounded in `test_race_only_at_the_end`: every disagreement of a free-running
  concurrent run is such a case, with thinkgate keeping more thinking than the
  reference; in lockstep (a probe faster than the next token) there is none,
  except the transition in the budget's very last token (the stream ends on it).
- E3 (not generated): a transition glued to a letter or digit ("AWait") or at
  the very start of the thinking; thinkgate does not probe there
  (`find_transition`), the reference does (tests/router/deer/test_deer_driver.py
  pins thinkgate's rule).
- E4 (not generated): a one-token probe; the reference divides by zero.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections import Counter

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.config import DeerSettings
from router.deer.upstream import DeerUpstream
from router.upstreams.base import CallContext
from tests.router.deer.fake_vllm import FakeVllm
from tests.router.deer.reference_deer import CLOSE, probe_span, run_reference

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
QUESTION = "What is 2+2? Please reason step by step, and put your final answer within \\boxed{}."

FILLER = [" so", " x", " =", " 2", ".", ",", "\n", " the", " sum", " is", " 4", "}", "{", ")", " wait", "\n\n"]
TRANSITION = [[" Wait"], ["\n\nWait"], [".", "Wait"], ["\n", "Wait"]]
R1_PROBE = ["1", "2", "x", "\\frac", "{1", "}{", "}", "}}", " }", "}\n", "}.", "\n", " ", ")", ")}", "\\", "+", "^"]
QWEN_PROBE = ["1", "2", "x", "}", "\n", " ", ".", "}\n", "\\", CLOSE, CLOSE, "</", "think>"]

# per mode; the run covers 2 modes, and the race bound a third
CASES = int(os.environ.get("THINKGATE_DEER_DIFF_CASES", "300"))  # 850: the figure in the README
TALLY: Counter[str] = Counter()


@st.composite
def thinking_scripts(draw: st.DrawFn) -> list[str]:
    tokens: list[str] = []
    for _ in range(draw(st.integers(0, 9))):
        tokens += draw(st.lists(st.sampled_from(FILLER), min_size=1, max_size=14))
        tokens += draw(st.sampled_from(TRANSITION))
    tokens += draw(st.lists(st.sampled_from(FILLER), min_size=1, max_size=12))
    return tokens + [CLOSE]


def probe_scripts(seed: int, family: str) -> list[tuple[list[str], list[float]]]:
    """Eleven probes' tokens and logprobs from a seed (drawing them token by token through
    hypothesis made data generation cost more than the runs themselves)."""
    rng = random.Random(seed)
    vocab = R1_PROBE if family == "deepseek-r1" else QWEN_PROBE
    probes = []
    for _ in range(11):
        tokens = ["{"] + rng.choices(vocab, k=rng.randint(1, 24))
        # probabilities spread around the thresholds, certainty (1.0) common, as in real probes
        probs = [
            rng.choice((1.0, rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.0), rng.uniform(1e-12, 1.0))) for _ in tokens
        ]
        probes.append((tokens, [math.log(p) for p in probs]))
    return probes


@st.composite
def cases(draw: st.DrawFn) -> dict:
    family = draw(st.sampled_from(["deepseek-r1", "qwen3"]))
    return {
        "family": family,
        "thinking": draw(thinking_scripts()),
        "probes": probe_scripts(draw(st.integers(0, 2**32 - 1)), family),
        "max_tokens": draw(st.integers(16, 260)),
        "ratio": draw(st.sampled_from([0.6, 0.8, 0.9, 1.0])),
        "threshold": draw(st.sampled_from([0.5, 0.9, 0.95, 0.99])),
        "max_probes": draw(st.integers(1, 10)),
        "margin": draw(st.sampled_from([0, 5, 20, 50])),
    }


async def run_thinkgate(case: dict, mode: str, lockstep: bool) -> tuple[dict, CallContext, FakeVllm]:
    ctx = CallContext()
    # the driver puts its trace in ctx.extra before thinking starts: one entry per decided probe
    fake = FakeVllm(
        case["thinking"],
        case["probes"],
        lockstep=lockstep,
        decided=lambda: len(ctx.extra.get("deer_trace", [])),
        max_probes=case["max_probes"],
    )
    settings_ = DeerSettings(
        family=case["family"],
        threshold=case["threshold"],
        max_probes=case["max_probes"],
        thinking_budget=case["ratio"],
        exit_margin_tokens=case["margin"],
        transitions=["Wait"],
        probe_mode=mode,
        template="local",
        chat_template=TEMPLATE,
        wall_clock_s=60.0,
        probe_timeout_s=60.0,
    )
    client = httpx.AsyncClient(transport=fake)
    up = DeerUpstream("reasoning", "scripted", "http://fake/v1", settings_, timeout=60, client=client)
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": case["max_tokens"], "temperature": 0.0}
    try:
        # a hang is a failure of this case, not of the whole run
        out = await asyncio.wait_for(up.complete(body, ctx), 30)
    finally:
        await up.close()
    return out, ctx, fake


def compare(case: dict, mode: str, lockstep: bool = True) -> tuple[list[str], str, str, str]:
    """The differences between thinkgate and the reference model (empty: identical),
    thinkgate's kept thinking and exit reason, and the reference's kept thinking."""
    ref = run_reference(
        case["thinking"],
        case["probes"],
        family=case["family"],
        max_tokens=case["max_tokens"],
        ratio=case["ratio"],
        threshold=case["threshold"],
        max_probes=case["max_probes"],
        margin=case["margin"],
    )
    out, ctx, fake = asyncio.run(run_thinkgate(case, mode, lockstep))
    stats = ctx.deer
    assert stats is not None
    assert fake.lockstep_timeouts == 0
    kept = out["choices"][0]["message"].get("reasoning_content") or ""
    # a probe still out when the stream ended is traced as abandoned (E2's race): it never
    # had a verdict, so only the answered probes are compared with the reference's
    trace = [t for t in ctx.extra["deer_trace"] if t.get("verdict") != "abandoned"]
    diffs = []
    if kept != ref.kept:
        diffs.append(f"kept thinking: thinkgate {len(kept)} chars, reference {len(ref.kept)}")
    reason = {"high_prob": "confident", "too_long": "budget", "regular_end": "natural_end"}[ref.reason]
    if stats.reason != reason:
        diffs.append(f"reason: thinkgate {stats.reason}, reference {ref.reason}")
    if stats.exit_step != ref.exit_step:
        diffs.append(f"exit step: thinkgate {stats.exit_step}, reference {ref.exit_step}")
    ref_probes = [p for p in ref.probes if not p.at_budget]  # E1
    TALLY["E1 reference's extra probe at the budget"] += len(ref.probes) - len(ref_probes)
    if len(trace) != len(ref_probes):
        diffs.append(f"probes: thinkgate {len(trace)}, reference {len(ref_probes)}")
    for t, r in zip(trace, ref_probes):
        if t["confidence"] is None or not math.isclose(t["confidence"], r.confidence, rel_tol=1e-9, abs_tol=1e-12):
            diffs.append(f"probe {r.step} confidence: thinkgate {t['confidence']}, reference {r.confidence}")
        if (t["verdict"] != "continue") != r.exit:
            diffs.append(
                f"probe {r.step} verdict: thinkgate {t['verdict']}, reference {'exit' if r.exit else 'continue'}"
            )
        if abs(r.confidence - case["threshold"]) < 1e-9:
            TALLY["tie at the threshold"] += 1
    TALLY[f"cases {mode}{'' if lockstep else ' free-running'}"] += 1
    TALLY["probes compared"] += min(len(trace), len(ref_probes))
    TALLY[f"exit {ref.reason}"] += 1
    return diffs, kept, stats.reason, ref.kept


def last_budget_token_is_a_transition(case: dict) -> bool:
    budget = int(case["max_tokens"] * case["ratio"])
    tokens = case["thinking"][:budget]
    return len(tokens) == budget and CLOSE not in tokens and "Wait" in tokens[-1]


SETTINGS = settings(
    max_examples=CASES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(cases())
def test_sequential_probing_matches_the_reference(case):
    diffs, *_ = compare(case, "sequential")
    assert not diffs, diffs


@SETTINGS
@given(cases())
def test_concurrent_probing_matches_the_reference_when_probes_beat_the_stream(case):
    diffs, *_ = compare(case, "concurrent", lockstep=True)
    if diffs and last_budget_token_is_a_transition(case):
        TALLY["E2 transition in the budget's last token (lockstep)"] += 1
        return
    assert not diffs, diffs


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_race_only_at_the_end(case):
    """Free-running concurrent probing (the stream does not wait for probes): every
    difference is E2, the stream reaching its end before a probe's verdict, and then
    thinkgate keeps all its thinking, what the reference kept and possibly more."""
    diffs, kept, reason, ref_kept = compare(case, "concurrent", lockstep=False)
    if diffs:
        assert reason in ("natural_end", "budget"), diffs
        # all of its thinking: what the reference kept and possibly more (or the same, when the
        # probe the stream outran would have said "continue")
        assert kept.startswith(ref_kept), diffs
        TALLY["E2 race at the end (free-running)"] += 1


def test_zz_report():
    """Prints the tally of the runs above (pytest -s shows it)."""
    print("\ndifferential tally:", dict(sorted(TALLY.items())))
    if TALLY:
        assert TALLY["tie at the threshold"] == 0


def test_reference_model_spans():
    # the reference's R1 probe stops at the first end string; Qwen3's at </think>
    assert probe_span(["{", "1", "}}", "x"], "deepseek-r1") == 3
    assert probe_span(["{\\", "frac", "{1", "}{", "2", "}\\", "sqrt"], "deepseek-r1") == 6
    assert probe_span(["{", "4", "}", "\n", CLOSE, "x"], "qwen3") == 5
    assert probe_span(["{"] + ["x"] * 30, "qwen3") == 20
