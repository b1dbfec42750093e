"""calibrate selfref --prefix: the AUROC of Self-Ref judged on the first K tokens."""

from __future__ import annotations

import json

import pytest

import calibrate.selfref as cal
from calibrate.selfref_prefix import truncate
from tests.calibrate.test_selfref import _fake_server


def test_truncate_keeps_the_first_k_tokens_of_chat_and_completion_choices():
    chat = {"message": {"content": "abc"}, "logprobs": {"content": [{"token": "a"}, {"token": "b"}, {"token": "c"}]}}
    assert truncate(chat, 2)["message"]["content"] == "ab" and len(truncate(chat, 2)["logprobs"]["content"]) == 2
    comp = {"text": "abc", "logprobs": {"tokens": ["a", "b", "c"], "token_logprobs": [-1, -2, -3], "text_offset": [0, 1, 2]}}
    t = truncate(comp, 1)
    assert t["text"] == "a" and t["logprobs"]["token_logprobs"] == [-1]


def test_a_prefix_before_the_answer_token_cannot_tell_and_one_past_it_can(tmp_path, capsys):
    # the fake's answers are "The answer is N." with the signal on the 4th token only
    out = tmp_path / "r.json"
    args = cal.build_parser().parse_args(
        ["--base-url", "http://fake/v1", "--model", "m", "--arith", "40", "--prefix", "2,4", "--out", str(out), "--quiet"]
    )
    assert cal.run(args, transport=_fake_server([])) == 0
    rows = {r["mode"]: r for r in json.loads(out.read_text())["prefix"]["rows"]}
    assert rows["min_prob"]["2"] == pytest.approx(0.5)  # every prefix token has the same probability
    assert rows["min_prob"]["4"] == rows["min_prob"]["whole"] == 1.0
    assert "AUROC on the first K tokens" in capsys.readouterr().out


def test_prefix_counts_are_checked():
    with pytest.raises(SystemExit):
        cal.build_parser().parse_args(["--arith", "4", "--prefix", "0,8"])
