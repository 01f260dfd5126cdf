"""The HTTP side: one aiohttp low-level server per simulated host, each on its own unix
socket, all on one event loop.

Routes answer as the Docker Engine API does (paths with or without a ``/vX.Y`` prefix,
the engine's headers, ``{"message": ...}`` errors). ``/events`` follows the engine's
``getEvents``: buffered events for ``since``/``until``, then live ones until ``until``
passes or the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from .answers import SimContainer, SimNetwork
from .host import SimHost

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
# Keys the engine accepts on list endpoints; anything else is a 400, as there.
CONTAINER_FILTERS = frozenset({"id", "name", "status", "label", "network"})
NETWORK_FILTERS = frozenset({"id", "name", "driver", "label", "type", "scope"})


class BadRequest(ValueError):
    pass


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def parse_time(value: str | None) -> int | None:
    """The engine's ``timetypes.ParseTimestamps``: ``seconds[.fraction]`` to nanoseconds."""
    if not value:
        return None
    seconds, _, fraction = value.partition(".")
    try:
        ns = int(seconds) * 1_000_000_000
        if fraction:
            ns += int(int(fraction) * 10 ** (9 - len(fraction)))
    except ValueError:
        raise BadRequest(f"failed to parse value {value!r} as a timestamp") from None
    return ns


def parse_filters(text: str | None) -> dict[str, set[str]]:
    """``filters`` as the engine reads it: ``{"key": ["v"]}`` or the older ``{"key": {"v": true}}``."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise BadRequest(f"invalid filter JSON: {text[:100]}") from None
    if not isinstance(raw, dict):
        raise BadRequest("filters must be a JSON object")
    out: dict[str, set[str]] = {}
    for key, values in raw.items():
        if isinstance(values, dict):
            out[key] = {str(v) for v, on in values.items() if on}
        elif isinstance(values, list):
            out[key] = {str(v) for v in values}
        else:
            raise BadRequest(f"filter {key!r}: expected a list of values")
    return out


def _exact(filters: Mapping[str, set[str]], key: str, value: str) -> bool:
    return key not in filters or value in filters[key]


def _fuzzy(filters: Mapping[str, set[str]], key: str, value: str) -> bool:
    return key not in filters or value in filters[key] or any(value.startswith(p) for p in filters[key])


def _labels(filters: Mapping[str, set[str]], labels: Mapping[str, str]) -> bool:
    """Every ``label`` filter must hold (``key`` or ``key=value``)."""
    for wanted in filters.get("label", ()):
        key, has_value, value = wanted.partition("=")
        if key not in labels or (has_value and labels[key] != value):
            return False
    return True


def event_matches(filters: Mapping[str, set[str]], ev: Mapping[str, Any]) -> bool:
    """The engine's ``events.Filter.Include``: AND across keys, OR within one."""
    if not filters:
        return True
    actor = ev["Actor"]
    attrs = actor.get("Attributes") or {}
    names = (actor["ID"], attrs.get("name", ""))
    image = attrs.get("image", "")
    return (
        _exact(filters, "event", ev["Action"])
        and _exact(filters, "type", ev["Type"])
        and _exact(filters, "scope", ev.get("scope", "local"))
        # Like the engine, a name filter of one kind excludes the events of other kinds.
        and all(_fuzzy(filters, kind, names[0]) or _fuzzy(filters, kind, names[1]) for kind in ("container", "network", "volume", "plugin", "daemon"))
        and ("image" not in filters or image in filters["image"] or image.split(":")[0] in filters["image"])
        and _labels(filters, attrs)
    )


def _container_matches(filters: Mapping[str, set[str]], c: SimContainer) -> bool:
    return (
        _fuzzy(filters, "id", c.id)
        and ("name" not in filters or any(re.search(p, "/" + c.name) for p in filters["name"]))
        and _exact(filters, "status", c.state)
        and _exact(filters, "network", c.spec.network)
        and _labels(filters, c.spec.label_map)
    )


def _network_matches(filters: Mapping[str, set[str]], n: SimNetwork) -> bool:
    builtin = n.name in ("bridge", "host", "none")
    return (
        _fuzzy(filters, "id", n.id)
        and ("name" not in filters or any(p in n.name for p in filters["name"]))
        and _exact(filters, "driver", n.driver)
        and _exact(filters, "type", "builtin" if builtin else "custom")
        and _exact(filters, "scope", "local")
        and _labels(filters, n.labels)
    )


def _check_filters(filters: Mapping[str, set[str]], allowed: Iterable[str]) -> None:
    for key in filters:
        if key not in allowed:
            raise BadRequest(f"invalid filter '{key}'")


class EngineHandler:
    """The request handler of one simulated host."""

    def __init__(self, host: SimHost, version_body: bytes, headers: Mapping[str, str]) -> None:
        self.host = host
        self.version_body = version_body
        self.headers = dict(headers)
        rec = host.rec
        self.max_api, self.min_api = _version_tuple(rec.api_version), _version_tuple(rec.min_api_version)
        self.ping_headers = {**self.headers, **{k: v for k, v in rec.ping.items() if k.lower() != "content-type"}}

    def _json(self, body: bytes, status: int = 200) -> web.Response:
        return web.Response(body=body, status=status, content_type="application/json", headers=self.headers)

    def _error(self, status: int, message: str) -> web.Response:
        return self._json(json.dumps({"message": message}).encode() + b"\n", status)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if (m := _VERSIONED.match(path)) is not None:
            asked = (int(m.group(1)), int(m.group(2)))
            if asked > self.max_api:
                return self._error(400, f"client version {asked[0]}.{asked[1]} is too new. Maximum supported API version is {self.host.rec.api_version}")
            if asked < self.min_api:
                return self._error(
                    400,
                    f"client version {asked[0]}.{asked[1]} is too old. Minimum supported API version is {self.host.rec.min_api_version}, please upgrade your client to a newer version",
                )
            path = m.group(3)
        if request.method not in ("GET", "HEAD"):
            return self._error(501, "a simulated engine is read-only: only GET requests are answered")
        try:
            return await self._route(request, path.rstrip("/") or "/")
        except BadRequest as exc:
            return self._error(400, str(exc))

    async def _route(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        host, query = self.host, request.query
        if path == "/_ping":
            return web.Response(body=b"OK", content_type="text/plain", charset="utf-8", headers=self.ping_headers)
        if path == "/version":
            return self._json(self.version_body)
        if path == "/info":
            return self._json(host.answer_info())
        if path == "/events":
            return await self._events(request)
        parts = path.split("/")
        if parts[1] == "containers":
            everything = query.get("all", "") in ("1", "true", "True")
            if path == "/containers/json":
                filters = parse_filters(query.get("filters"))
                if not filters:
                    return self._json(host.answer_containers(all=everything))
                _check_filters(filters, CONTAINER_FILTERS)
                wanted = {c.id for c in host.containers.values() if _container_matches(filters, c)}
                return self._json(json.dumps([c for c in host.listed(all=everything) if c["Id"] in wanted]).encode() + b"\n")
            if len(parts) == 4 and parts[3] == "json":
                c = host.find_container(parts[2])
                return self._json(host.answer_container(c)) if c else self._error(404, f"No such container: {parts[2]}")
        if parts[1] == "networks":
            if path == "/networks":
                filters = parse_filters(query.get("filters"))
                if not filters:
                    return self._json(host.answer_networks())
                _check_filters(filters, NETWORK_FILTERS)
                names = {n.name for n in host.networks.values() if _network_matches(filters, n)}
                return self._json(json.dumps([n for n in json.loads(host.answer_networks()) if n["Name"] in names]).encode() + b"\n")
            if len(parts) == 3:
                net = host.find_network(parts[2])
                return self._json(host.answer_network(net)) if net else self._error(404, f"network {parts[2]} not found")
        return self._error(404, "page not found")

    async def _events(self, request: web.BaseRequest) -> web.StreamResponse:
        since, until = parse_time(request.query.get("since")), parse_time(request.query.get("until"))
        filters = parse_filters(request.query.get("filters"))
        if until is not None and since is not None and until < since:
            raise BadRequest("`since` time cannot be after `until` time")
        now = time.time_ns()
        only_past = until is not None and until < now
        response = web.StreamResponse(headers=self.headers)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        # Headers go out at once, as the engine flushes them: a client sees the stream open.
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        host = self.host
        # Subscribe before reading the buffer, so nothing falls between the two.
        host.subscribers.add(queue)
        try:
            last = 0
            if since is not None or until is not None:
                for ev in list(host.events):
                    if ev["timeNano"] >= (since or 0) and (until is None or ev["timeNano"] <= until):
                        last = ev["timeNano"]
                        if event_matches(filters, ev):
                            await response.write(json.dumps(ev).encode() + b"\n")
            if only_past:
                return response
            while True:
                timeout = None if until is None else max(0.0, (until - time.time_ns()) / 1e9)
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    break
                if ev is None:  # dropped as too slow, or the simulator is stopping
                    break
                if ev["timeNano"] <= last:
                    continue  # already sent from the buffer
                if until is not None and ev["timeNano"] > until:
                    break
                if event_matches(filters, ev):
                    await response.write(json.dumps(ev).encode() + b"\n")
        finally:
            host.subscribers.discard(queue)
        return response
