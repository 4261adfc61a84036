"""The agent daemon's containers (daemon only; paas never imports it).

manager (the API's entry point, composing the rest), prepare (rootfs,
network, bundle, launch, teardown), lifecycle (start, stop, the tick,
restarts), exits and adoption (noticing exits; taking containers back after
an agent restart), supervision (the pure restart policy), records (what is
persisted), logs, exec, operations (per-container locks and tasks).
"""
