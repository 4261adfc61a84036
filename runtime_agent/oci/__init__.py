"""OCI runtime plumbing: runc and its spec, seccomp, overlay mounts, cgroups,
a container's /etc files. Part of the host toolkit (no daemon, no Django)."""
