"""Diagnostics of Vigil itself: its caches, the health of each component (named checks with
measurements), on-demand component tests, the full health check with stored reports, and the
database's figures and integrity check."""
