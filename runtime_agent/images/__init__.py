"""OCI images: the registry client, layer tars (pack and unpack) and the
content-addressed store of unpacked layers. Part of the host toolkit."""
