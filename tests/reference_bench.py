"""What docker-bench-security (the CIS v1.6.0 reference script) reports, re-stated.

The script itself cannot be fetched on this machine (no network but package
registries), so its predicates for the items Posture must agree with are written
down here from its published checks, in its own terms:

- it looks only at *running* containers (``docker ps --quiet``);
- 5.8 and 5.14 read ``docker port``, i.e. live bindings; 5.14 only matches ``0.0.0.0``;
- 5.10/5.16/5.17/5.21/5.31 compare ``NetworkMode``/``PidMode``/``IpcMode``/``UTSMode``/
  ``UsernsMode`` with the literal ``host``;
- 5.4 warns on any non-empty ``CapAdd`` other than the default set;
- 5.32 warns when a mount's source mentions ``docker.sock``.

This is an oracle for the agreement test, not product code.
"""

from __future__ import annotations

import docker


def bench_warnings(client: docker.DockerClient) -> set[tuple[str, str]]:
    """(CIS item, container name) pairs that the reference would WARN on."""
    warns: set[tuple[str, str]] = set()
    for c in client.containers.list():  # running only, like `docker ps -q`
        a, hc, name = c.attrs, c.attrs["HostConfig"], c.name
        if hc.get("CapAdd"):
            warns.add(("5.4", name))
        if hc.get("Privileged"):
            warns.add(("5.5", name))
        live = a["NetworkSettings"].get("Ports") or {}
        for bindings in live.values():
            for b in bindings or []:
                if b.get("HostPort") and int(b["HostPort"]) < 1024:
                    warns.add(("5.8", name))
                if b.get("HostIp") == "0.0.0.0":
                    warns.add(("5.14", name))
        for item, field in (("5.10", "NetworkMode"), ("5.16", "PidMode"), ("5.17", "IpcMode"), ("5.21", "UTSMode"), ("5.31", "UsernsMode")):
            if hc.get(field) == "host":
                warns.add((item, name))
        if any("docker.sock" in (m.get("Source") or "") for m in a.get("Mounts") or []):
            warns.add(("5.32", name))
    return warns
