"""The `paas` command-line client (standard library only)."""

__version__ = "0.1.0"
