"""The agent daemon's HTTP API (aiohttp). Nothing outside the daemon imports it."""
