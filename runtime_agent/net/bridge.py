"""Container networking for one host: a bridge, and per container a named
network namespace, a veth pair and an address; published ports and outbound
NAT (see :mod:`runtime_agent.net.ports` for why nftables DNAT).

Layout of one agent's objects, all derived from the bridge name so that two
agents (or two test runs) on one machine never touch each other's:

    bridge   BRIDGE                      gateway = first address of the subnet
    netns    /var/run/netns/BRIDGE-<h>   runc joins it by path
    veth     v<h> (host, on the bridge)  <->  eth0 (inside the netns)
    nft      table ip NFT_TABLE

where <h> is a short hash of (bridge, container id). Allocations, attachments
and published ports are persisted in ``state_dir`` so a restarted agent finds
them again (:meth:`HostNetwork.attachments`) and re-renders the same rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from runtime_agent.host.errors import CommandFailed, Conflict, InvalidRequest, NetworkError
from runtime_agent.net import ipam, links, ports
from runtime_agent.net import policy as _policy
from runtime_agent.net.names import IFNAME_RE, IFNAME_RULE, NFT_TABLE_RE, NFT_TABLE_RULE
from runtime_agent.net.state import NetStateStore
from runtime_agent.oci.etcfiles import host_nameservers, write_etc_files
from runtime_agent.wire import IdRange, PortBinding

__all__ = ["Attachment", "HostNetwork", "write_etc_files"]

log = logging.getLogger("runtime_agent.network")

CID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SYSCTL = Path("/proc/sys/net/ipv4")


@dataclass(frozen=True)
class Attachment:
    cid: str
    netns_name: str
    netns_path: str
    address: str
    gateway: str
    prefixlen: int
    host_veth: str
    group: str | None = None  # network group (the app): see net/policy.py

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attachment:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def write_sysctl(path: Path, value: str) -> None:
    """Set a /proc/sys knob only if it differs (writes need root; reads do not)."""
    try:
        if path.read_text().strip() == value:
            return
        path.write_text(value)
    except OSError as exc:
        raise NetworkError(f"cannot set {path} to {value}: {exc}") from exc


def _with_host_nameservers(settings: _policy.PolicySettings) -> _policy.PolicySettings:
    """The containers get the host's nameservers (oci/etcfiles.py): open port 53 there."""
    servers = {*settings.dns_servers, *host_nameservers()}
    return dataclasses.replace(settings, dns_servers=tuple(sorted(servers)))


def _ipv6_off(bridge: str) -> None:
    """No IPv6 for containers (net/policy.py): not on their bridge either."""
    knob = SYSCTL.parent / "ipv6" / "conf" / bridge / "disable_ipv6"
    if knob.exists():  # a host without IPv6 has nothing to switch off
        write_sysctl(knob, "1")


def _published(state: dict[str, Any]) -> dict[str, ports.Published]:
    return {
        cid: ports.Published(
            address=entry["address"],
            bindings=tuple(_binding_from_dict(b) for b in entry["bindings"]),
            since=int(entry.get("since", 0)),
        )
        for cid, entry in state["ports"].items()
    }


def _member(state: dict[str, Any], cid: str) -> _policy.Member:
    """``cid`` as the policy sees it; its group gets a number (the packet
    mark of net/policy.py) when first seen, kept in the state."""
    a = state["attachments"][cid]
    groups = state["groups"]
    key = a.get("group") or f"-{cid}"  # no group: a group of its own
    if key not in groups:
        groups[key] = state["next_gid"] = state.get("next_gid", 0) + 1
    return _policy.Member(cid, a["address"], a["host_veth"], groups[key])


def _group_mates(state: dict[str, Any], cid: str) -> set[str]:
    """The other containers of ``cid``'s network group (none without one)."""
    group = state["attachments"].get(cid, {}).get("group")
    if not group:
        return set()
    return {c for c, a in state["attachments"].items() if c != cid and a.get("group") == group}


def _ports_entry(
    state: dict[str, Any], cid: str, address: str, wanted: list[PortBinding]
) -> dict[str, Any]:
    """The record of ``cid``'s ports; ``since`` (the order of first
    publication) decides who holds a port shared within a group."""
    old = state["ports"].get(cid)
    if old is not None and "since" in old:
        since = old["since"]
    else:
        since = state["port_seq"] = state.get("port_seq", 0) + 1
    return {"address": address, "bindings": [asdict(b) for b in wanted], "since": since}


def _binding_from_dict(data: dict[str, Any]) -> PortBinding:
    return PortBinding(**data)


NO_ROUTER_SOURCES = (
    "this host has no router sources, so its route ports answer no one: set "
    "PAAS_AGENT_ROUTER_SOURCES (the router's addresses) and restart the agent, or have "
    "the control plane push them (manage.py host_router_sources)"
)


def _check_router_sources(policy: _policy.PolicySettings, wanted: list[PortBinding]) -> None:
    """A route port that would answer no one is refused at once, rather than
    leaving the deploy to wait out its health check."""
    if not policy.router_sources and any(b.router_only for b in wanted):
        raise Conflict(NO_ROUTER_SOURCES, field="ports")


def _warn_without_router_sources(
    policy: _policy.PolicySettings, published: dict[str, ports.Published]
) -> None:
    """On setup (agent start): route ports kept from before, now closed to all."""
    if not policy.router_sources and any(
        b.router_only for p in published.values() for b in p.bindings
    ):
        log.warning(NO_ROUTER_SOURCES)


def _plumbed(att: Attachment, addr: IPv4Interface, gateway: IPv4Address) -> bool:
    return (
        links.netns_alive(att.netns_name)
        and links.link_exists(att.host_veth)
        and links.container_side_ready(att.netns_name, addr, gateway)
    )


def _check_subnet(state: dict[str, Any], subnet: IPv4Network) -> None:
    old = state.get("subnet")
    if old and old != str(subnet) and state["attachments"]:
        raise Conflict(
            f"subnet changed from {old} to {subnet} while containers are attached",
            field="subnet",
        )


class _Background:
    """One call in its own thread; :meth:`wait` joins it and raises its error."""

    def __init__(self, fn: Callable[[], None], name: str) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name)
        self._thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the waiter
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error

    def wait_quietly(self) -> bool:
        """Join; True if the call succeeded."""
        self._thread.join()
        return self._error is None


class HostNetwork:
    def __init__(
        self,
        state_dir: Path,
        bridge: str,
        subnet: IPv4Network,
        nft_table: str,
        policy: _policy.PolicySettings | None = None,
    ) -> None:
        if not IFNAME_RE.fullmatch(bridge):
            raise InvalidRequest(f"bridge name {bridge!r} must be {IFNAME_RULE}")
        if not NFT_TABLE_RE.fullmatch(nft_table):
            raise InvalidRequest(f"nft table name {nft_table!r} must be {NFT_TABLE_RULE}")
        if subnet.prefixlen > 29:
            raise InvalidRequest(f"subnet {subnet} is too small for containers")
        self.bridge = bridge
        self.subnet = subnet
        self.gateway = ipam.gateway_of(subnet)
        self.nft_table = nft_table
        self.policy = _with_host_nameservers(policy or _policy.PolicySettings())
        self.store = NetStateStore(state_dir)
        self._table_ready = False  # set once this instance has written the whole table

    # --- host side --------------------------------------------------------

    def setup(self) -> None:
        """Bridge, sysctls and nft table; safe to call on every agent start."""
        with self.store.transaction() as state:
            _check_subnet(state, self.subnet)
            state["subnet"] = str(self.subnet)
            links.ensure_bridge(
                self.bridge, IPv4Interface(f"{self.gateway}/{self.subnet.prefixlen}")
            )
            # Containers reach the world (package downloads in builds) through the host.
            write_sysctl(SYSCTL / "ip_forward", "1")
            # Only on our bridge: lets a DNATed 127.0.0.1 packet be routed to it.
            write_sysctl(SYSCTL / "conf" / self.bridge / "route_localnet", "1")
            _ipv6_off(self.bridge)
            self._table_ready = False  # repair: always the whole table here
            self._apply_rules(state)
            _warn_without_router_sources(self.policy, _published(state))

    def teardown(self) -> None:
        """Remove everything this agent made: rules, veths, netns, bridge, state."""
        ports.delete_table(self.nft_table)
        ports.apply(_policy.delete_bridge_table(self.nft_table))
        self._table_ready = False
        with self.store.transaction() as state:
            names = {a["host_veth"] for a in state["attachments"].values()}
            for ifname in sorted(names | set(links.bridge_ports(self.bridge))):
                links.delete_link(ifname)
            for ns in filter(self.owns_netns, links.list_netns()):
                links.remove_netns(ns)
            links.delete_link(self.bridge)
            state["attachments"] = {}
            state["ports"] = {}
            state["groups"] = {}
            state["last"] = None

    # --- containers ---------------------------------------------------------

    def attach(
        self,
        cid: str,
        bindings: list[PortBinding] | None = None,
        group: str | None = None,
        id_range: IdRange | None = None,
    ) -> Attachment:
        """Give ``cid`` its netns, veth and address; the same ones if called again.

        With ``bindings``, also :meth:`publish` them at that address: the
        ``nft`` run then goes on in a thread while the veth is plumbed (each
        takes ~5 ms on a container's start path and neither needs the other).
        """
        self._check_cid(cid)
        wanted = None if bindings is None else ports.validate(bindings)
        with self.store.transaction() as state:
            joined = cid not in state["attachments"]  # a new member of the policy
            att = self._allocate(state, cid, group)
            rules = None
            ports_changed = wanted is not None and self._record_ports(
                state, cid, att.address, wanted
            )
            if joined or ports_changed:
                join = _member(state, cid) if joined else None
                rules = _Background(lambda: self._apply_rules(state, join=join), "nft-apply")
            try:
                self._plumb(att, id_range)
            except BaseException:
                if rules is not None and rules.wait_quietly():
                    # The rules are in the kernel: the record must say so, or
                    # the detach of the teardown would not take them out.
                    self.store.checkpoint(state)
                raise
            if rules is not None:
                rules.wait()  # nft failed: the transaction records no ports
            return att

    def _plumb(self, att: Attachment, id_range: IdRange | None) -> None:
        addr = IPv4Interface(f"{att.address}/{att.prefixlen}")
        fresh = links.ensure_netns(att.netns_name, id_range)
        # A netns made just now is empty: no need to look inside (~3 ms
        # of netlink round trips on every container start).
        if fresh or not _plumbed(att, addr, self.gateway):
            # replace: a half-made pair from a crash goes first.
            links.plumb_veth(
                att.host_veth, self.bridge, att.netns_name, addr, self.gateway, replace=True
            )
            log.info("attached %s at %s (netns %s)", att.cid, att.address, att.netns_name)

    def detach(self, cid: str) -> None:
        """Undo :meth:`attach` and :meth:`publish`; the address becomes free."""
        self._check_cid(cid)
        with self.store.transaction() as state:
            left = _member(state, cid) if cid in state["attachments"] else None
            state["attachments"].pop(cid, None)
            state["groups"].pop(f"-{cid}", None)
            if state["ports"].pop(cid, None) is not None or left is not None:
                self._apply_rules(state, leave=left)
            links.delete_link(self._host_veth(cid))
            links.remove_netns(self._netns_name(cid))
            log.info("detached %s", cid)

    def attachments(self) -> dict[str, Attachment]:
        state = self.store.read()
        return {cid: Attachment.from_dict(a) for cid, a in state["attachments"].items()}

    def publish(self, cid: str, address: str, bindings: list[PortBinding]) -> None:
        """Make ``bindings`` the ports published for ``cid`` (replacing earlier ones)."""
        self._check_cid(cid)
        wanted = ports.validate(bindings)
        if IPv4Address(address) not in self.subnet:
            raise InvalidRequest(f"address {address} is not in {self.subnet}", field="address")
        with self.store.transaction() as state:
            if self._record_ports(state, cid, address, wanted):
                self._apply_rules(state)

    def _record_ports(
        self, state: dict[str, Any], cid: str, address: str, wanted: list[PortBinding]
    ) -> bool:
        """Check ``wanted`` against every holder of a host port and record it;
        False when nothing changed (idempotent, and no nft run for a container
        without ports)."""
        current = _published(state)
        ports.check_conflicts(cid, wanted, current, _group_mates(state, cid))
        held = {b for pub in current.values() for b in pub.bindings}
        # New ones only: a container restarting keeps what it holds.
        _check_router_sources(self.policy, [b for b in wanted if b not in held])
        for b in wanted:
            if b not in held:  # a port our DNAT holds has no host listener to find
                ports.check_host_port_free(b)
        new = _ports_entry(state, cid, address, wanted) if wanted else None
        if state["ports"].get(cid) == new:
            return False
        if new is None:
            del state["ports"][cid]
        else:
            state["ports"][cid] = new
        return True

    def unpublish(self, cid: str) -> None:
        self._check_cid(cid)
        with self.store.transaction() as state:
            if state["ports"].pop(cid, None) is not None:
                self._apply_rules(state)

    def published(self) -> dict[str, ports.Published]:
        return _published(self.store.read())

    def set_router_sources(self, sources: tuple[IPv4Network, ...]) -> None:
        """Who route ports answer from outside from now on (PUT /v1/router-sources):
        only that set is refilled; containers and open connections are untouched."""
        with self.store.transaction() as state:  # no publish in between
            self.policy = dataclasses.replace(self.policy, router_sources=sources)
            self._apply_rules(state, sources_only=True)

    # --- helpers ----------------------------------------------------------

    def owns_netns(self, name: str) -> bool:
        """True for this agent's netns names (bridge "pt" must not claim "pt-a"'s)."""
        return re.fullmatch(rf"{re.escape(self.bridge)}-[0-9a-f]{{16}}", name) is not None

    def _hash(self, cid: str) -> str:
        return hashlib.sha256(f"{self.bridge}/{cid}".encode()).hexdigest()

    def _netns_name(self, cid: str) -> str:
        return f"{self.bridge}-{self._hash(cid)[:16]}"

    def _host_veth(self, cid: str) -> str:
        return f"v{self._hash(cid)[:13]}"  # 14 chars: under IFNAMSIZ (16 with NUL)

    def _check_cid(self, cid: str) -> None:
        if not CID_RE.fullmatch(cid):
            raise InvalidRequest(f"container id {cid!r} is not valid", field="cid")

    def _allocate(self, state: dict[str, Any], cid: str, group: str | None) -> Attachment:
        if cid in state["attachments"]:
            return Attachment.from_dict(state["attachments"][cid])
        in_use = {a["address"] for a in state["attachments"].values()}
        address = ipam.allocate(self.subnet, in_use, state.get("last"))
        name = self._netns_name(cid)
        att = Attachment(
            cid=cid,
            netns_name=name,
            netns_path=str(links.netns_path(name)),
            address=str(address),
            gateway=str(self.gateway),
            prefixlen=self.subnet.prefixlen,
            host_veth=self._host_veth(cid),
            group=group,
        )
        # Recorded before the links exist: a crash in between leaves an
        # allocation that the retried attach reuses, never a lost address.
        state["attachments"][cid] = asdict(att)
        state["last"] = att.address
        self.store.checkpoint(state)
        return att

    def _apply_rules(
        self,
        state: dict[str, Any],
        *,
        join: _policy.Member | None = None,
        leave: _policy.Member | None = None,
        sources_only: bool = False,
    ) -> None:
        """The whole tables (on setup, or if someone removed them), else the
        publish chain and the membership change (or the router sources
        alone), in one transaction."""
        published = _published(state)
        if self._table_ready:
            if sources_only:
                change = ports.render_router_sources(self.nft_table, self.policy.router_sources)
            else:
                change = ports.render_publish(self.nft_table, published, self.bridge)
                change += _policy.render_change(self.nft_table, join, leave)
            try:
                ports.apply(change)
                return
            except CommandFailed:
                log.warning("nft table %s was changed behind our back: rebuilding", self.nft_table)
        members = [_member(state, cid) for cid in sorted(state["attachments"])]
        filters = _policy.render_ip_chains(self.bridge, self.gateway, self.policy, members)
        table = ports.render(self.nft_table, self.bridge, self.subnet, published, filters,
                             self.policy.router_sources)  # fmt: skip
        ports.apply(table + _policy.render_bridge_table(self.nft_table, members))
        self._table_ready = True
