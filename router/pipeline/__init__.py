"""One request's steps as plain async code, protocol-agnostic: core (cache, embed,
classify, route, respond), streaming, escalation (Self-Ref), accounting, recorder,
and replies (the completion/chunk shape every step passes along)."""
