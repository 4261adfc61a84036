"""Shared test support: real helper processes and tiny images that several
test packages use (the agent's and the builder's tests)."""
