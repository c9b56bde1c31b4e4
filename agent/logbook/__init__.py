"""Vigil's own log events kept in the store, and the operator's log files read on demand, behind
`GET /api/v1/logs` and `vigil logs`."""
