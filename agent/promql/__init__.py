"""PromQL: lexer, parser and evaluator for the subset Vigil answers (pure: no I/O).

The engine reads samples only through a `Queryable` (see `values.py`), so the same code
serves the HTTP API over the local history and the rule unit tests over in-memory series.
"""
