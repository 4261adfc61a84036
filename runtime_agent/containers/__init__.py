"""The agent daemon's containers: the manager, their persisted records,
supervision (restart policy, backoff) and logs. Daemon only."""
