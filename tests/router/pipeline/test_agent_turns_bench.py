"""bench/agent_turns.py on its shipped session, with the test classifier (the
real one needs the MiniLM weights): the replay runs through the app, and its
counts agree with the session's own structure."""

from __future__ import annotations

from bench.agent_turns import POLICIES, SESSION, load_session, replay, switches
from tests.router.pipeline.agent_session import ViewEmbedder


class ProofClassifier:
    """P 0.7 for what mentions a proof, else 0.2."""

    threshold = 0.5

    def predict(self, messages, embedding):  # type: ignore[no-untyped-def]
        return 0.7 if any("Prove" in str(m.get("content")) for m in messages) else 0.2


async def test_the_shipped_session_replays_under_each_policy():
    session = load_session(SESSION)
    assert len(session) == len(SESSION.read_text().splitlines()) == 16
    out = {name: await replay(session, agent, ViewEmbedder(), ProofClassifier()) for name, agent in POLICIES.items()}
    keep, tier, indep = out["keep"], out["keep + relay fast"], out["independent"]
    assert [t["turn"] for t in keep["turns"]] == (["task"] + ["relay"] * 4) * 2 + ["task", "summary"] + ["task", "relay", "relay", "summary"]
    # the proof task's loop (task, 2 relays, summary) reasons; the tier sends its 2 relays fast
    assert (keep["reasoning_calls"], tier["reasoning_calls"], indep["reasoning_calls"]) == (4, 2, 4)
    assert all(r["calls"] == 16 for r in out.values())
    assert (switches(keep["turns"]), switches(tier["turns"])) == (0, 2)
