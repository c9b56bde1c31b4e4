"""Rule files, rule evaluation with Prometheus semantics, and the alert state machine."""
