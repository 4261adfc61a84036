"""The per-host runtime agent: runs OCI images as isolated containers.

It never imports the control plane (``paas``); the wire format both sides
read lives in :mod:`runtime_agent.wire`.
"""
