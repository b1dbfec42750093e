"""DEER exit policy: given a trial-answer probe and the thinking state, keep
thinking or exit. Pure logic, no I/O: the network driver is `router.deer.upstream`.

Reference: Dynamic Early Exit in Reasoning (iie-ycx/DEER, MIT). At each
reasoning transition ("Wait") the driver appends an answer-inducing suffix to
the thinking so far, lets the model write a short trial answer with logprobs,
and asks `decide` whether that answer is confident enough to stop thinking.

Confidence follows the reference: the mean probability of the probe's tokens,
skipping the first one (the opening "{" right after "\\boxed" is predictable
whatever the answer), either arithmetic ("mean", the default) or geometric
("geometric", for over-confident families such as Qwen3). Which tokens count
depends on the model family (`Scoring`):

- "deepseek-r1": every token after the first, up to the one that completes the
  first of the reference's end-of-answer strings (`R1_ANSWER_ENDS`), as the
  reference's probe stops there; arithmetic mean.
- "qwen3": every token after the first up to and including the closing
  `</think>` (so whatever the model writes between "}" and it counts too),
  geometric mean, and 0 unless the probe's last token is `</think>`: a model
  that still wants to think after writing an answer is not done, however sure
  each answer token looks.
- "generic" (other models, other servers): the balanced `\\boxed{...}` group,
  the choice letter or the free text (`answer_span`).

The reference exits when confidence is strictly above the threshold, and on
the first probe whose thinking spans at least `budget - exit_margin_tokens`
tokens ("forced exit near the limit"); both are reproduced here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

AnswerKind = Literal["math", "choice", "text"]
ConfidenceMode = Literal["mean", "geometric"]
Scoring = Literal["generic", "qwen3", "deepseek-r1"]

# Where the reference's R1 probe stops: the strings that usually end a
# `\boxed{...}` answer. The span scored is cut at the first of them, wherever
# the server stopped (an OpenAI-compatible server takes at most 4 stop strings).
R1_ANSWER_ENDS = (" }", "}\n", "}\n\n", "}.", "}.\n", "}\\", "}}", ")}", ")}.", ")}\n")
# the 4 sent to the server: all among R1_ANSWER_ENDS, so the server never stops
# before the reference would; the rest are cut client-side by `answer_span`
R1_SERVER_STOPS = ["}\n", "}.", "}}", " }"]
# the reference clamps each probability at 1e-10 before the geometric mean
_LOG_FLOOR = math.log(1e-10)


@dataclass(frozen=True)
class Probe:
    """A finished trial answer, as the server returned it."""

    tokens: Sequence[str]
    logprobs: Sequence[float | None]
    text: str = ""
    finish_reason: str | None = None
    closed_think: bool = False  # the probe wrote the thinking-close tag (or stopped on it)


@dataclass(frozen=True)
class PolicyConfig:
    threshold: float = 0.95
    confidence: ConfidenceMode = "mean"
    require_think_close: bool = False
    max_probes: int = 10
    on_max_probes: Literal["continue", "exit"] = "continue"
    skip_first: bool = True  # drop the first probe token from the mean (see module doc)
    kind: AnswerKind = "math"
    scoring: Scoring = "generic"  # which tokens count (see module doc)
    close_tag: str = "</think>"
    # exit on a probe whose thinking spans >= budget - this many tokens (the reference: 50)
    exit_margin_tokens: int = 0


@dataclass
class ThinkState:
    """What the driver knows about the thinking so far."""

    thinking_tokens: int = 0  # generated so far (all streams, including discarded tails)
    thinking_budget: int = 0  # 0: unlimited
    probes: int = 0  # probes already fired (including failed ones)
    elapsed_s: float = 0.0
    wall_clock_s: float = 0.0  # 0: unlimited
    # tokens the thinking kept at the probe's transition spans (None: unknown, use thinking_tokens)
    tokens_at_probe: int | None = None
    confidences: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Continue:
    confidence: float | None = None
    probe_more: bool = True  # False once the probe cap is reached: think on without probing


@dataclass(frozen=True)
class Exit:
    reason: str  # confident | budget | wall_clock | max_probes
    confidence: float | None = None


Verdict = Continue | Exit


def _cut_at_first_end(tokens: list[str], ends: Sequence[str]) -> int | None:
    """Index of the token that completes the first of `ends` in the joined text."""
    text = ""
    for i, tok in enumerate(tokens):
        text += tok
        if any(e in text for e in ends):
            return i
    return None


def answer_span(
    probe: Probe, kind: AnswerKind, scoring: Scoring = "generic", close_tag: str = "</think>"
) -> tuple[list[str], list[float | None]]:
    """The probe tokens that make up the trial answer itself.

    "deepseek-r1" (math): up to the token that completes the first of
    `R1_ANSWER_ENDS`. "qwen3": up to the first token holding `close_tag`.
    "generic" follows.

    The driver stops probes with cheap stop strings, but a stop string cannot
    count braces (`\\boxed{\\frac{1}{2}}`), so the span is trimmed here: for
    math up to the token that balances the first brace group, for multiple
    choice up to the closing parenthesis; free text keeps everything.
    Tokens after `</think>` (when the server did not stop there) never count.
    """
    tokens = list(probe.tokens)
    lps = list(probe.logprobs)
    if scoring == "deepseek-r1" and kind == "math":
        cut = _cut_at_first_end(tokens, R1_ANSWER_ENDS)
        return (tokens, lps) if cut is None else (tokens[: cut + 1], lps[: cut + 1])
    for i, tok in enumerate(tokens):
        if close_tag in tok:
            tokens, lps = tokens[: i + 1], lps[: i + 1]
            break
    if scoring == "qwen3":
        return tokens, lps  # the whole probe counts, whatever the kind
    if kind == "math":
        depth = 0
        opened = False
        for i, tok in enumerate(tokens):
            for ch in tok:
                if ch == "{":
                    depth += 1
                    opened = True
                elif ch == "}":
                    depth -= 1
            if opened and depth <= 0:
                return tokens[: i + 1], lps[: i + 1]
    elif kind == "choice":
        for i, tok in enumerate(tokens):
            if ")" in tok:
                return tokens[: i + 1], lps[: i + 1]
    return tokens, lps


def ends_thinking(probe: Probe, cfg: PolicyConfig) -> bool:
    """The Qwen3 rule's test. "qwen3" scoring: the probe's last token is the close
    tag itself (the reference's test); otherwise the driver's `closed_think`
    (llama.cpp does not return the stop string's token)."""
    if cfg.scoring == "qwen3":
        return bool(probe.tokens) and probe.tokens[-1] == cfg.close_tag
    return probe.closed_think


def confidence(
    probe: Probe,
    mode: ConfidenceMode = "mean",
    *,
    kind: AnswerKind = "math",
    skip_first: bool = True,
    scoring: Scoring = "generic",
    close_tag: str = "</think>",
) -> float | None:
    """Mean token probability of the trial answer; None when there is nothing to score."""
    _, lps = answer_span(probe, kind, scoring, close_tag)
    if skip_first and len(lps) > 1:
        lps = lps[1:]
    values = [lp for lp in lps if lp is not None and not math.isnan(lp)]
    if not values:
        return None
    if mode == "geometric":
        return math.exp(sum(max(min(lp, 0.0), _LOG_FLOOR) for lp in values) / len(values))
    return sum(math.exp(min(lp, 0.0)) for lp in values) / len(values)


def check_limits(state: ThinkState) -> Exit | None:
    """Budget and wall-clock caps, checked on every thinking step (no probe needed)."""
    if state.thinking_budget and state.thinking_tokens >= state.thinking_budget:
        return Exit("budget")
    if state.wall_clock_s and state.elapsed_s >= state.wall_clock_s:
        return Exit("wall_clock")
    return None


def may_probe(state: ThinkState, cfg: PolicyConfig) -> bool:
    return state.probes < cfg.max_probes


def decide(state: ThinkState, probe: Probe | None, cfg: PolicyConfig) -> Verdict:
    """Verdict after a probe. `state.probes` already counts this probe.

    `probe=None` means the probe failed or timed out: keep thinking (a broken
    probe is no evidence of confidence), but it still counts against the cap.
    """
    # the budget is judged on the thinking this probe saw (what is kept on exit), with
    # the reference's forced exit near the limit; a tail streamed meanwhile does not count
    used = state.tokens_at_probe if state.tokens_at_probe is not None else state.thinking_tokens
    limit: Exit | None = None
    if state.thinking_budget and used >= state.thinking_budget - cfg.exit_margin_tokens:
        limit = Exit("budget")
    elif state.wall_clock_s and state.elapsed_s >= state.wall_clock_s:
        limit = Exit("wall_clock")
    conf: float | None = None
    if probe is not None:
        conf = confidence(
            probe,
            cfg.confidence,
            kind=cfg.kind,
            skip_first=cfg.skip_first,
            scoring=cfg.scoring,
            close_tag=cfg.close_tag,
        )
        if conf is not None and cfg.require_think_close and not ends_thinking(probe, cfg):
            conf = 0.0
        if conf is not None:
            state.confidences.append(conf)
    # strictly above, as the reference compares
    if conf is not None and conf > cfg.threshold:
        return Exit("confident", conf)
    if limit is not None:
        return Exit(limit.reason, conf)
    if state.probes >= cfg.max_probes:
        if cfg.on_max_probes == "exit":
            return Exit("max_probes", conf)
        return Continue(conf, probe_more=False)
    return Continue(conf)


# -- answer kinds --------------------------------------------------------------

KindSource = Literal["setting", "boxed_instruction", "response_format", "guess"]
_BOXED = re.compile(r"\\boxed\b")


def probe_kind(
    texts: Sequence[str], last_user: str, response_format: object = None, configured: str = "auto"
) -> tuple[AnswerKind, KindSource]:
    """The trial-answer kind from the request's own signals, the guess last.

    1. the route's setting (`deer.probe_kind`), when not "auto";
    2. a `\\boxed` instruction anywhere in the prompt (system or user): the
       client asked for a boxed answer, so the probe asks for one too;
    3. a structured `response_format` (JSON): the answer is free text, not boxed;
    4. otherwise `answer_kind`'s guess on the last user message.
    """
    if configured in ("math", "choice", "text"):
        return configured, "setting"  # type: ignore[return-value]
    if any(_BOXED.search(t) for t in texts):
        return "math", "boxed_instruction"
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        return "text", "response_format"
    return answer_kind(last_user), "guess"


_CHOICE = re.compile(r"(?m)^\s*\(?[A-Ea-e][\).:]\s+\S")
_CHOICE_WORDS = re.compile(
    r"\b(multiple[- ]choice|which of the following|choose (one|the correct)|options?:)", re.IGNORECASE
)
_CODE = re.compile(
    r"```|\b(def|class|function|return|import)\b|\b(write|implement) (a|an|the)? ?(python|javascript|function|program|code|script)\b",
    re.IGNORECASE,
)
_MATH = re.compile(
    r"\\boxed|\$[^$]+\$|\\frac|\\sqrt|\b(compute|calculate|solve|evaluate|simplify|how many|what is the (value|sum|product|remainder)|find (the|all|x|y|n))\b|\d\s*[-+*/^=]\s*\d",
    re.IGNORECASE,
)


def answer_kind(text: str) -> AnswerKind:
    """Which trial-answer suffix fits a prompt. A deliberately small heuristic:

    - listed options ("A) ...", "(B) ...") or "which of the following" -> choice
    - code cues (fences, def/class, "write a function") -> text (code answers are free text)
    - LaTeX, arithmetic, "compute/solve/how many/find" -> math (\\boxed)
    - anything else -> text

    Choice wins over math (a math question with options is answered by letter);
    code wins over math (a program that computes something is not boxed).
    """
    if len(_CHOICE.findall(text)) >= 2 or _CHOICE_WORDS.search(text):
        return "choice"
    if _CODE.search(text):
        return "text"
    if _MATH.search(text):
        return "math"
    return "text"


def probe_stops(
    kind: AnswerKind, think_close_tag: str = "</think>", require_think_close: bool = False, scoring: Scoring = "generic"
) -> list[str]:
    """Stop strings that end a probe cheaply once the trial answer is written.

    With the Qwen3 rule the probe must be allowed to run on to the close tag,
    so it stops only there (the token budget bounds it anyway).
    """
    if require_think_close:
        return [think_close_tag]
    if kind == "math" and scoring == "deepseek-r1":
        return list(R1_SERVER_STOPS)
    if kind == "math":
        # where \boxed{...} usually ends; `answer_span` trims the exact brace group.
        # At most 4: OpenAI and vLLM reject longer stop lists (HTTP 400), which
        # would silently turn every math probe into "not confident".
        return ["}\n", "}.", "}$", "} "]
    if kind == "choice":
        return [")"]
    return ["\n\n", think_close_tag]
