"""Who may call and how much: auth (keys, tenants, allowed controls), limits (rate and
token limits), middleware (applies them to the completion endpoints), shutdown (drain)."""
