"""What was decided, kept and read back: log (the decision log), summary, replay
(a threshold tried on logged traffic), metrics (Prometheus)."""
