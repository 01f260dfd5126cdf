"""Engine URLs are operator input: one parser, clear errors."""

from __future__ import annotations

import pytest

from posture.collector import InvalidEngineURL, parse_engine_url


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("tcp://docker-1.example.com:2376", "tcp://docker-1.example.com:2376"),
        ("tcp://10.1.2.3:2376", "tcp://10.1.2.3:2376"),
        ("tcp://[2001:db8::5]:2376", "tcp://[2001:db8::5]:2376"),
        ("ssh://ops@build-7", "ssh://ops@build-7"),
        ("ssh://ops@build-7:2222/run/user/1000/docker.sock", "ssh://ops@build-7:2222/run/user/1000/docker.sock"),
        ("  TCP://Docker-1.Example.com:2376 ", "tcp://docker-1.example.com:2376"),
    ],
)
def test_valid_urls(url, normalised):
    assert str(parse_engine_url(url)) == normalised


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("/var/run/docker.sock", "needs the unix:// scheme"),
        ("docker.example.com:2376", "needs a scheme"),
        ("https://docker.example.com:2376", "use tcp://"),
        ("ftp://x", "unsupported scheme"),
        ("unix://var/run/docker.sock", "three slashes"),
        ("tcp://docker.example.com", "needs a port"),
        ("tcp://docker.example.com:99999", "port must be a number"),
        ("tcp://docker.example.com:0", "port must be a number"),
        ("tcp://169.254.169.254:2375", "link-local, metadata"),
        ("tcp://[fd00:ec2::254]:2375", "link-local, metadata"),
        ("tcp://[fe80::1]:2375", "link-local, metadata"),
        ("tcp://metadata.google.internal:80", "metadata service"),
        ("tcp://0.0.0.0:2375", "link-local, metadata or unspecified"),
        ("tcp://user@docker:2376", "carries no user"),
        ("tcp://bad_host!:2376", "neither an IP address nor a valid host name"),
        ("ssh://ops:hunter2@build-7", "never put a password"),
        ("tcp://docker:2376/?x=1", "query"),
        ("tcp://dock er:2376", "white space"),
    ],
)
def test_invalid_urls_say_what_is_wrong(url, message):
    with pytest.raises(InvalidEngineURL, match=message):
        parse_engine_url(url)
