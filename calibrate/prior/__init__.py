"""The pair-agnostic difficulty prior (issue 25): corpora of many models' per-item outcomes,
an item-response fit, and prompt -> difficulty written as an ordinary artifact."""
