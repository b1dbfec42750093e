"""Learning from live traffic (layer 2, beside the parts it uses): shadow-ask
the route not taken after the client has its answer, grade the pair with a
judge model (policies.judge), append it to the outcome log, and swap in a
retrained classifier artifact without a restart (`slot`, `admin`)."""
