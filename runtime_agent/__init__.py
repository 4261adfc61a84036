"""The per-host runtime agent: runs OCI images as isolated containers.

It never imports the control plane (``paas``); the wire format both sides
read lives in :mod:`runtime_agent.wire`.

Two layers. The host toolkit, which the control plane's builder uses too:
``host/`` (command runner, errors, safe paths), ``oci/`` (runc, spec,
seccomp, overlay, cgroups, /etc files), ``images/`` (registry client,
layers, store) and ``net/`` (bridge, links, ports, addresses). The daemon on
top of it, which only ``python -m runtime_agent`` runs: ``__main__``,
``config``, ``api/`` (the HTTP server) and ``containers/`` (manager, records,
supervision, logs).
"""
