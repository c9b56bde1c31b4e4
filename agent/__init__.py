"""Vigil: a per-host monitoring agent."""

__version__ = "0.1.0"
