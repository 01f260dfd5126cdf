"""Remediation text written for one container: the flag to drop or use, in both forms."""

from __future__ import annotations

from posture.collector.snapshot import Container, PortBinding


def advice(sentence: str, *, run: str = "", compose: str = "", note: str = "") -> str:
    """A sentence, then the exact ``docker run`` and compose forms, then any caveat."""
    lines = [sentence]
    if run:
        lines.append(f"docker run: {run}")
    if compose:
        lines.append(f"compose: {compose}")
    if note:
        lines.append(note)
    return "\n".join(lines)


def where(container: Container) -> str:
    """How the operator finds this container in their own files."""
    if container.compose_project and container.compose_service:
        return f"service '{container.compose_service}' of compose project '{container.compose_project}'"
    return f"container '{container.name}'"


def loopback_spec(binding: PortBinding) -> str:
    """The same publication restricted to the loopback interface."""
    port = "" if binding.host_port is None else str(binding.host_port)
    proto = "" if binding.protocol == "tcp" else f"/{binding.protocol}"
    return f"127.0.0.1:{port}:{binding.container_port}{proto}"


def publish_on_loopback(container: Container, binding: PortBinding, why: str) -> str:
    safe = loopback_spec(binding)
    return advice(
        f"{why} In {where(container)}, bind the port to loopback (or to one internal address) "
        "and put a reverse proxy or the host firewall in front of anything that must be reachable.",
        run=f"replace -p {binding.spec} with -p {safe}",
        compose=f'under ports:, replace "{binding.spec}" with "{safe}"',
    )


def loopback_flags(container: Container) -> tuple[str, str]:
    """``-p`` flags and compose entries publishing the container's own ports on loopback:
    its configured bindings, else the ports its image exposes, else a placeholder."""
    specs = [loopback_spec(b) for b in container.port_bindings]
    if not specs:
        for exposed in container.exposed_ports:
            port, _, proto = exposed.partition("/")
            suffix = "" if proto in ("", "tcp") else f"/{proto}"
            specs.append(f"127.0.0.1:{port}:{port}{suffix}")
    specs = specs or ["127.0.0.1:PORT:PORT"]
    return " ".join(f"-p {s}" for s in specs), "[" + ", ".join(f'"{s}"' for s in specs) + "]"
