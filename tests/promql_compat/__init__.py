"""PromQL compatibility kit: a seeded data set, the query list, and a real Prometheus to compare with."""
