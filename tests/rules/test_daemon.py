"""The engine itself, on hand-built snapshots: how Posture reached it and what /info said."""

from __future__ import annotations

import pytest

from tests.builders import conclude, engine, hits, only, snapshot, tcp, unix

UNENCRYPTED = "API is accessible on http://0.0.0.0:2375 without encryption.\n         Access to the remote API is equivalent to root access on the host."
UNVERIFIED = "API is accessible on https://0.0.0.0:2376 without TLS client verification"


def daemon_rules(snap) -> set[str]:
    return {s.rule_id for s in conclude(snap) if s.subject_type == "daemon"}


@pytest.mark.rule("daemon-tcp-no-tls")
def test_plain_tcp_is_found_from_how_we_connected_and_from_the_engines_warning():
    by_connection = conclude(snapshot(connection=tcp("tcp://10.0.0.5:2375")))
    spec = only(by_connection, "daemon-tcp-no-tls")
    assert (spec.subject_type, spec.subject_key, spec.subject_name) == ("daemon", "daemon", "test-host")
    assert (spec.severity, spec.cis, spec.exposed) == ("critical", "2.7", True)
    assert spec.evidence == {"connected_via": "tcp://10.0.0.5:2375", "tls": False, "Warnings": []}
    assert "dockerd --tlsverify" in spec.remediation and "ssh://" in spec.remediation
    # Polled over the unix socket, the engine still says it also listens in the clear.
    by_warning = only(conclude(snapshot(engine=engine(warnings=(UNENCRYPTED,)))), "daemon-tcp-no-tls")
    assert by_warning.evidence["Warnings"] == [UNENCRYPTED]
    assert hits(conclude(snapshot(connection=tcp(tls=True, client_cert=True))), "daemon-tcp-no-tls") == {}
    assert hits(conclude(snapshot(connection=unix())), "daemon-tcp-no-tls") == {}


@pytest.mark.rule("daemon-tls-no-client-verify")
def test_tls_without_client_verification():
    spec = only(conclude(snapshot(connection=tcp(tls=True, client_cert=False))), "daemon-tls-no-client-verify")
    assert (spec.severity, spec.cis) == ("high", "2.7")
    assert spec.evidence == {"connected_via": "tcp://10.0.0.5:2376", "client_certificate_used": False, "Warnings": []}
    assert only(conclude(snapshot(engine=engine(warnings=(UNVERIFIED,)))), "daemon-tls-no-client-verify").evidence["Warnings"] == [UNVERIFIED]
    assert hits(conclude(snapshot(connection=tcp(tls=True, client_cert=True))), "daemon-tls-no-client-verify") == {}


def test_a_verified_tls_connection_raises_neither_transport_rule():
    assert not daemon_rules(snapshot(connection=tcp(tls=True, client_cert=True))) & {"daemon-tcp-no-tls", "daemon-tls-no-client-verify"}


@pytest.mark.rule("insecure-registries")
def test_insecure_registries():
    spec = only(conclude(snapshot(engine=engine(insecure_registries=("10.9.0.0/16", "registry.lab:5000")))), "insecure-registries")
    assert spec.evidence == {"RegistryConfig.insecure": ["10.9.0.0/16", "registry.lab:5000"]} and spec.cis == "2.5"
    assert "remove --insecure-registry 10.9.0.0/16 --insecure-registry registry.lab:5000" in spec.remediation
    assert hits(conclude(snapshot()), "insecure-registries") == {}


@pytest.mark.rule("userns-remap-off", "daemon-rootful")
def test_user_namespace_remapping_and_rootless_mode():
    def found(*security_options: str) -> set[str]:
        on = conclude(snapshot(engine=engine(security_options=("name=seccomp,profile=builtin", *security_options))))
        return {rule_id for rule_id in ("userns-remap-off", "daemon-rootful") if hits(on, rule_id)}

    assert found("name=cgroupns") == {"userns-remap-off", "daemon-rootful"}
    assert found("name=userns") == {"daemon-rootful"}  # --userns-remap satisfies 2.9
    assert found("name=rootless") == set()  # rootless satisfies both
    plain = conclude(snapshot())
    assert only(plain, "userns-remap-off").evidence == {"SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"]}
    assert (only(plain, "userns-remap-off").cis, only(plain, "daemon-rootful").cis) == ("2.9", "2.1")
    assert "dockerd --userns-remap=default" in only(plain, "userns-remap-off").remediation


@pytest.mark.rule("no-authorization-plugin")
def test_no_authorization_plugin():
    spec = only(conclude(snapshot()), "no-authorization-plugin")
    assert (spec.severity, spec.cis) == ("info", "2.12")
    assert hits(conclude(snapshot(engine=engine(authorization_plugins=("opa-docker-authz",)))), "no-authorization-plugin") == {}


@pytest.mark.rule("swarm-mode")
@pytest.mark.parametrize(("state", "flagged"), [("active", True), ("pending", True), ("locked", True), ("inactive", False), ("", False)])
def test_swarm_mode(state, flagged):
    on = conclude(snapshot(engine=engine(swarm_state=state, swarm_manager=state == "active")))
    assert bool(hits(on, "swarm-mode")) is flagged
    # The other way round, on the same test: an engine in the opposite state.
    other = "inactive" if flagged else "active"
    assert bool(hits(conclude(snapshot(engine=engine(swarm_state=other))), "swarm-mode")) is not flagged
    if flagged:
        spec = only(on, "swarm-mode")
        assert spec.evidence == {"Swarm.LocalNodeState": state, "Swarm.ControlAvailable": state == "active"} and spec.exposed is True


def test_daemon_findings_name_the_host_or_else_the_engine():
    assert only(conclude(snapshot(), host_name="prod-db-1"), "daemon-rootful").subject_name == "prod-db-1"
    assert only(conclude(snapshot(engine=engine(name="docker-7")), host_name=""), "daemon-rootful").subject_name == "docker-7"


def test_a_well_configured_engine_raises_no_daemon_finding():
    quiet = engine(security_options=("name=seccomp,profile=builtin", "name=rootless"), authorization_plugins=("opa-docker-authz",))
    assert daemon_rules(snapshot(engine=quiet, connection=unix("/run/user/1000/docker.sock"))) == set()
