"""Container networking: the host's bridge, veth links and network
namespaces, address allocation, published ports (nftables) and their
persisted state. Part of the host toolkit."""
