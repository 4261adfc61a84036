"""The names this host's network objects get, and the one place their rules
are written: the settings of both processes check them at start, and the
network code again before a name reaches netlink or ``nft -f``."""

from __future__ import annotations

import re

# IFNAMSIZ is 16 bytes with the terminating NUL.
IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")
IFNAME_RULE = "1-15 ASCII letters, digits, '-' or '_' starting with a letter"

NFT_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
NFT_TABLE_RULE = "1-64 ASCII letters, digits or '_' starting with a letter"
