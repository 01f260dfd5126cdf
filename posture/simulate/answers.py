"""A simulated host's state, and its rendering as the Engine API's JSON.

Each answer starts from the recorded answer of a real engine (``recording.py``) and
changes only what differs between containers: identity, image, labels, network
endpoint, published ports, the namespace and privilege settings, and the state. The
shapes (which fields exist, which are null, how a port on every interface is
reported twice, for 0.0.0.0 and ::) are the real engine's.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .catalog import Spec
from .recording import Recording

ZERO_TIME = "0001-01-01T00:00:00Z"
BRIDGE_SUBNET = ipaddress.ip_network("172.17.0.0/16")


def derive(*parts: object) -> str:
    """A stable 64-hex id from its parts (endpoint, sandbox and layer ids)."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def timestamp(ns: int) -> str:
    """The engine's RFC 3339 with nanoseconds: ``2026-11-28T10:17:53.949195456Z``."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


@dataclass
class SimNetwork:
    id: str
    name: str
    driver: str  # bridge, host, null
    created_ns: int
    subnet: ipaddress.IPv4Network | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1) if self.subnet else ""


@dataclass
class SimContainer:
    id: str
    spec: Spec
    created_ns: int
    state: str = "created"  # created, running, exited
    started_ns: int = 0
    finished_ns: int = 0
    exit_code: int = 0
    pid: int = 0
    ip: str = ""  # on its network, while running
    inspect: bytes | None = None  # the cached answer; None after a change

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def running(self) -> bool:
        return self.state == "running"


def image_id(image: str) -> str:
    return f"sha256:{derive('image', image)}"


def _ports(spec: Spec, running: bool) -> dict[str, Any]:
    """``NetworkSettings.Ports``: empty unless running; a binding on "" is reported for 0.0.0.0 and ::."""
    if not running or spec.network == "host":
        return {}
    out: dict[str, Any] = {}
    for p in spec.ports:
        ips = ["0.0.0.0", "::"] if p.host_ip == "" else [p.host_ip]
        out.setdefault(f"{p.container_port}/{p.protocol}", []).extend({"HostIp": ip, "HostPort": str(p.host_port)} for ip in ips)
    return out


def _endpoint(rec: Recording, c: SimContainer, net: SimNetwork) -> dict[str, Any]:
    """One entry of ``NetworkSettings.Networks``, shaped like the recorded one for that kind of network."""
    if net.driver == "host":
        ep = rec.part("hostnet", "NetworkSettings", "Networks", "host")
    elif net.name == "bridge":
        ep = rec.part("clean", "NetworkSettings", "Networks", "bridge")
    else:
        ep = rec.part("compose-web", "NetworkSettings", "Networks", "shop_default")
        aliases = [c.id[:12]]
        if "com.docker.compose.service" in c.spec.label_map:
            aliases = [c.name, c.spec.label_map["com.docker.compose.service"], c.id[:12]]
        ep["Aliases"] = aliases
    live = c.running and net.driver != "host"
    # A container never started has no endpoint on the default bridge yet.
    ep["NetworkID"] = "" if c.state == "created" and net.name == "bridge" else net.id
    ep["EndpointID"] = derive("endpoint", c.id, c.started_ns) if c.running else ""
    ep["IPAddress"] = c.ip if live else ""
    ep["Gateway"] = net.gateway if live else ""
    ep["IPPrefixLen"] = net.subnet.prefixlen if live and net.subnet else 0
    ep["MacAddress"] = mac(c.ip) if live else ""
    return ep


def mac(ip: str) -> str:
    """The engine derives a container's MAC from its IPv4 address (02:42 + the four octets)."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def container_inspect(rec: Recording, c: SimContainer, net: SimNetwork) -> dict[str, Any]:
    """``GET /containers/{id}/json``."""
    spec = c.spec
    base = "privileged" if spec.privileged else "pid-host" if spec.pid_host else "clean"
    data = rec.container(base)
    old_id = data["Id"]
    for key in ("ResolvConfPath", "HostnamePath", "HostsPath", "LogPath"):
        data[key] = data[key].replace(old_id, c.id)
    layer = derive("layer", c.id)
    data["GraphDriver"]["Data"] = {
        k: v.replace(v.split("/overlay2/")[1].split("/")[0].removesuffix("-init"), layer) for k, v in data["GraphDriver"]["Data"].items()
    }
    data["Id"], data["Name"], data["Created"] = c.id, "/" + c.name, timestamp(c.created_ns)
    data["Image"] = image_id(spec.image)
    data["Path"], data["Args"] = spec.command[0], list(spec.command[1:])
    config = data["Config"]
    config.update(Hostname=c.id[:12], Image=spec.image, Labels=spec.label_map, Cmd=list(spec.command))
    config["ExposedPorts"] = {f"{p.container_port}/{p.protocol}": {} for p in spec.ports} or None
    if config["ExposedPorts"] is None:
        config.pop("ExposedPorts")
    host = data["HostConfig"]
    host["NetworkMode"] = "default" if spec.network == "bridge" else spec.network
    host["PortBindings"] = {f"{p.container_port}/{p.protocol}": [{"HostIp": p.host_ip, "HostPort": str(p.host_port)}] for p in spec.ports} or None
    host["CapAdd"] = list(spec.cap_add) or None
    host["PidMode"] = "host" if spec.pid_host else ""
    data["Mounts"] = []
    if spec.docker_sock:
        data["Mounts"], host["Binds"] = rec.part("sock", "Mounts"), rec.part("sock", "HostConfig", "Binds")
        config["Volumes"] = rec.part("sock", "Config", "Volumes")
    state = data["State"]
    state.update(Status=c.state, Running=c.running, Pid=c.pid if c.running else 0, ExitCode=c.exit_code)
    state["StartedAt"] = timestamp(c.started_ns) if c.started_ns else ZERO_TIME
    state["FinishedAt"] = timestamp(c.finished_ns) if c.finished_ns else ZERO_TIME
    settings = data["NetworkSettings"]
    endpoint = _endpoint(rec, c, net)
    settings["Networks"] = {net.name: endpoint}
    settings["Ports"] = _ports(spec, c.running)
    on_bridge = net.name == "bridge"
    for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress"):
        settings[key] = endpoint[key] if on_bridge else type(settings[key])()
    sandbox = derive("sandbox", c.id, c.started_ns) if c.started_ns else ""
    settings["SandboxID"] = sandbox
    settings["SandboxKey"] = f"/var/run/docker/netns/{sandbox[:12]}" if sandbox else ""
    return data


def _status(c: SimContainer, now_ns: int) -> str:
    """The human ``Status`` of ``docker ps``: frozen when the list is rendered (only a change re-renders it)."""
    if c.state == "created":
        return "Created"
    since = (now_ns - (c.started_ns if c.running else c.finished_ns)) / 1e9
    ago = human_duration(since)
    return f"Up {ago}" if c.running else f"Exited ({c.exit_code}) {ago} ago"


def human_duration(seconds: float) -> str:
    """Docker's ``units.HumanDuration``, as ``docker ps`` shows it."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return "1 second" if int(seconds) == 1 else f"{int(seconds)} seconds"
    minutes, hours = int(seconds / 60), int(seconds / 3600 + 0.5)
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    if hours < 48:
        return "About an hour" if hours == 1 else f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def container_listed(rec: Recording, c: SimContainer, net: SimNetwork, now_ns: int) -> dict[str, Any]:
    """One entry of ``GET /containers/json``, derived from the inspect answer as the engine does."""
    spec = c.spec
    ports = []
    for key, bindings in (_ports(spec, c.running) or {}).items():
        port, proto = key.split("/")
        ports += [{"IP": b["HostIp"], "PrivatePort": int(port), "PublicPort": int(b["HostPort"]), "Type": proto} for b in bindings]
    endpoint = _endpoint(rec, c, net)
    endpoint["Aliases"] = None  # the list leaves them out, as the engine's does
    return {
        "Command": " ".join(spec.command),
        "Created": c.created_ns // 1_000_000_000,
        "HostConfig": {"NetworkMode": "default" if spec.network == "bridge" else spec.network},
        "Id": c.id,
        "Image": spec.image,
        "ImageID": image_id(spec.image),
        "Labels": spec.label_map,
        "Mounts": rec.part("sock", "Mounts") if spec.docker_sock else [],
        "Names": ["/" + c.name],
        "NetworkSettings": {"Networks": {net.name: endpoint}},
        "Ports": sorted(ports, key=lambda p: (p["PrivatePort"], p["Type"], p["IP"])),
        "State": c.state,
        "Status": _status(c, now_ns),
    }


def network_inspect(rec: Recording, net: SimNetwork, members: list[SimContainer], *, listed: bool = False) -> dict[str, Any]:
    """``GET /networks/{id}`` (with its running members), or its ``GET /networks`` entry (without)."""
    template = {"bridge": "bridge", "host": "host", "null": "none"}.get(net.name, "shop_default")
    data = rec.network(template)
    data.update(Id=net.id, Name=net.name, Created=timestamp(net.created_ns), Labels=dict(net.labels))
    if net.subnet is not None:
        data["IPAM"]["Config"] = [{"Gateway": net.gateway, "Subnet": str(net.subnet)}]
    containers = {}
    if not listed:
        for c in members:
            live = net.driver != "host"
            containers[c.id] = {
                "EndpointID": derive("endpoint", c.id, c.started_ns),
                "IPv4Address": f"{c.ip}/{net.subnet.prefixlen}" if live and net.subnet else "",
                "IPv6Address": "",
                "MacAddress": mac(c.ip) if live else "",
                "Name": c.name,
            }
    data["Containers"] = containers
    return data


def info(rec: Recording, *, name: str, ident: str, containers: list[SimContainer], images: int, changed_ns: int) -> dict[str, Any]:
    """``GET /info``. ``SystemTime`` is the time of the last change, so an unchanged host answers the same bytes."""
    data = json.loads(json.dumps(rec.info))
    running = sum(c.running for c in containers)
    data.update(
        Name=name,
        ID=ident,
        Containers=len(containers),
        ContainersRunning=running,
        ContainersPaused=0,
        ContainersStopped=len(containers) - running,
        Images=images,
        SystemTime=timestamp(changed_ns),
    )
    return data
