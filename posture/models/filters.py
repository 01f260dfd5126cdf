"""One filter over findings, shared by the explorer page, ``manage.py findings``, the
exports and exception scopes: the same filter gives the same rows everywhere by construction.

``FindingFilter.parse(params)`` reads query parameters or command options (the same
names: ``rule``, ``host``, ``label``, ``image``, ``project``, ``name``, ``severity``,
``status``, ``since``, ``q``, …) into a validated, frozen filter or raises ``FilterError``
with one message per bad field; ``apply(queryset)`` narrows a Finding queryset;
``matches(finding, host)`` decides the same in Python (reconciliation uses it to apply
exceptions without a query per finding).

Globs (``image``, ``name``): ``*`` any run of characters, ``?`` one character, everything
else literal, case-sensitive like Docker's names. They become SQL patterns with ``%``,
``_`` and ``\\`` escaped (``GLOB`` on SQLite, whose ``LIKE`` ignores case); a glob without
wildcards is a plain equality, so the btree indexes serve it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import F, Lookup, Q, QuerySet, Value
from django.utils import timezone

from posture.labels import parse_label
from posture.rules import BY_ID

from .choices import FindingStatus, Severity, SubjectType
from .hosts import DockerHost

STATUSES = (*FindingStatus.values, "all")
# Query parameter / command option → what it holds; the order is the canonical URL order.
PARAMS = ("q", "rule", "cis", "severity", "status", "host", "label", "image", "project", "name", "since", "resolved_since", "exception", "finding")
MULTI = {"rule", "host", "label"}
MAX_TEXT = 300
PERIOD = re.compile(r"^(\d{1,4})([hdw])$")
PERIOD_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


class FilterError(ValueError):
    """Bad filter input: ``errors`` maps each parameter to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class Glob(Lookup):
    """``field`` matches a glob (already translated by ``sql_pattern``), case-sensitively."""

    lookup_name = "glob"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "sqlite":
            return f"{lhs} GLOB {rhs}", [*lhs_params, *rhs_params]
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]


class Search(Lookup):
    """Case-insensitive "contains" (``?q=``): ILIKE on PostgreSQL, which its trigram indexes
    serve; UPPER(…) LIKE UPPER(…) elsewhere. The value arrives escaped (``like_escape``)."""

    lookup_name = "search"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        if connection.vendor == "postgresql":
            return f"{lhs} ILIKE {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]
        return f"UPPER({lhs}) LIKE UPPER({rhs}) ESCAPE '\\'", [*lhs_params, *rhs_params]


class AnyOf(Lookup):
    """``field = ANY(%s)`` with a list as one array parameter (PostgreSQL)."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def has_wildcard(glob: str) -> bool:
    return "*" in glob or "?" in glob


def sql_pattern(glob: str, vendor: str) -> str:
    """The glob as a LIKE pattern (``%``, ``_`` and ``\\`` escaped) or, on SQLite, a GLOB pattern."""
    if vendor == "sqlite":
        return glob.replace("[", "[[]")  # GLOB's only other special character
    return like_escape(glob).replace("*", "%").replace("?", "_")


def glob_regex(glob: str) -> re.Pattern[str]:
    """The same glob for Python (reconciliation): anchored, case-sensitive."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{body}$", re.DOTALL)


def glob_q(field_name: str, glob: str, vendor: str) -> Q:
    if not has_wildcard(glob):
        return Q(**{field_name: glob})
    return Q(Glob(F(field_name), Value(sql_pattern(glob, vendor))))


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``, ``24h``, ``2w`` (before ``now``) or a date ``YYYY-MM-DD`` (its start, UTC)."""
    match = PERIOD.match(text)
    if match:
        return now - timedelta(**{PERIOD_UNITS[match[2]]: int(match[1])})
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError("use a period like 7d, 24h or 2w, or a date YYYY-MM-DD") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _frozen(labels: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(labels.items())))


@dataclass(frozen=True)
class FindingFilter:
    """A validated selection of findings. Empty fields select everything."""

    q: str = ""
    rules: tuple[str, ...] = ()
    cis: str = ""
    severity: Severity | None = None  # this severity and worse
    up_to: Severity | None = None  # this severity and milder (exception scopes)
    status: str = FindingStatus.OPEN
    hosts: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    image: str = ""
    project: str = ""
    name: str = ""
    since: datetime | None = None  # first seen at or after
    resolved_since: datetime | None = None
    exception: int | None = None  # covered by this exception now
    finding: int | None = None  # exactly this finding (single-finding exceptions)
    # The text as given, for URLs and forms (``7d`` stays ``7d``, not a timestamp).
    raw: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    # --- reading ------------------------------------------------------------------

    @classmethod
    def parse(
        cls,
        params: Mapping[str, Any] | Callable[[str], list[str]],
        *,
        now: datetime | None = None,
        status_default: str = FindingStatus.OPEN,
        check_hosts: bool = True,
    ) -> FindingFilter:
        """Read query parameters (a QueryDict), command options (a dict of lists or
        values) or any ``getlist``-like callable. Raises ``FilterError``. Host names are
        checked against the database (one query) unless ``check_hosts`` is false."""
        getlist = _getter(params)
        now = now or timezone.now()
        errors: dict[str, str] = {}
        raw: dict[str, tuple[str, ...]] = {}
        values: dict[str, Any] = {}

        def text(key: str) -> str:
            given = [v.strip() for v in getlist(key) if v and v.strip()]
            if len(given) > 1:
                errors[key] = "give it once"
            if given:
                raw[key] = (given[0],)
                if len(given[0]) > MAX_TEXT:
                    errors[key] = f"at most {MAX_TEXT} characters"
            return given[0] if given else ""

        def many(key: str) -> tuple[str, ...]:
            # Repeated (?host=a&host=b) or comma-separated (host=a, b): names, rule ids and
            # label pairs hold no commas.
            given = tuple(dict.fromkeys(p.strip() for v in getlist(key) if v for p in v.split(",") if p.strip()))
            if given:
                raw[key] = given
            return given

        values["q"] = text("q")
        rules = many("rule")
        unknown = [r for r in rules if r not in BY_ID]
        if unknown:
            errors["rule"] = f"no rule named {', '.join(unknown)} (see the Rules page or docs/rules.md)"
        values["rules"] = rules
        values["cis"] = text("cis")
        for key in ("severity", "up_to"):
            given = text(key)
            if given:
                try:
                    values[key] = Severity(given.lower())
                except ValueError:
                    errors[key] = f"one of {', '.join(Severity.values())}"
        status = text("status").lower() or status_default
        if status not in STATUSES:
            errors["status"] = f"one of {', '.join(STATUSES)}"
        if status != status_default:
            raw["status"] = (status,)
        else:
            raw.pop("status", None)
        values["status"] = status
        hosts = many("host")
        if hosts and check_hosts:
            known = set(DockerHost.objects.filter(name__in=hosts).values_list("name", flat=True))
            missing = [h for h in hosts if h not in known]
            if missing:
                errors["host"] = f"no host named {', '.join(missing)}"
        values["hosts"] = hosts
        labels: dict[str, str] = {}
        for item in many("label"):
            try:
                key, value = parse_label(item)
            except ValidationError as exc:
                errors["label"] = exc.messages[0]
                continue
            labels[key] = value
        values["labels"] = _frozen(labels)
        for key in ("image", "project", "name"):
            values[key] = text(key)
        for key in ("since", "resolved_since"):
            given = text(key)
            if given:
                try:
                    values[key] = parse_since(given, now)
                except ValueError as exc:
                    errors[key] = str(exc)
        for key in ("exception", "finding"):
            given = text(key)
            if given:
                if given.isdigit() and len(given) < 12:
                    values[key] = int(given)
                else:
                    errors[key] = "a number"
        if errors:
            raise FilterError(errors)
        return cls(raw=MappingProxyType(raw), **values)

    # --- writing ------------------------------------------------------------------

    def params(self) -> list[tuple[str, str]]:
        """The filter as query parameters, in a fixed order (links, exports, the command)."""
        out = []
        for key in PARAMS:
            for value in self.raw.get(key, ()):
                out.append((key, value))
        return out

    def querystring(self, **extra: str) -> str:
        return urlencode(self.params() + [(k, v) for k, v in extra.items() if v])

    def with_status(self, status: str) -> FindingFilter:
        raw = dict(self.raw)
        raw["status"] = (status,)
        return replace(self, status=status, raw=MappingProxyType(raw))

    @property
    def container_only(self) -> bool:
        """Image, compose project and container name describe containers only."""
        return bool(self.image or self.project or self.name)

    # --- applying -----------------------------------------------------------------

    def apply(self, findings: QuerySet, vendor: str | None = None) -> QuerySet:
        """Narrow a Finding queryset. Host labels become a subquery on hosts."""
        vendor = vendor or connections[findings.db].vendor
        qs = findings.with_status(self.status)
        if self.rules:
            qs = qs.filter(rule_id__in=self.rules)
        if self.cis:
            qs = qs.filter(cis=self.cis)
        if self.severity:
            qs = qs.filter(severity__in=Severity.at_least(self.severity))
        if self.up_to:
            qs = qs.filter(severity__in=at_most(self.up_to))
        if self.hosts or self.labels:
            # The hosts are looked up first (one small query) and passed as ids: PostgreSQL
            # cannot estimate a JSON label match, and with the real number of hosts in hand it
            # walks the explorer's order index instead of sorting half the fleet's findings.
            hosts = DockerHost.objects.filter(name__in=self.hosts) if self.hosts else DockerHost.objects.all()
            ids = list(hosts.with_labels(dict(self.labels)).order_by().values_list("pk", flat=True))
            # One array parameter on PostgreSQL: thousands of IN placeholders cost more to build than to run.
            qs = qs.filter(AnyOf(F("host_id"), Value(ids))) if vendor == "postgresql" else qs.filter(host_id__in=ids)
        if self.container_only:
            qs = qs.filter(subject_type=SubjectType.CONTAINER)
        if self.image:
            qs = qs.filter(glob_q("image", self.image, vendor))
        if self.project:
            qs = qs.filter(compose_project=self.project)
        if self.name:
            qs = qs.filter(glob_q("subject_name", self.name, vendor))
        if self.since:
            qs = qs.filter(first_seen__gte=self.since)
        if self.resolved_since:
            qs = qs.filter(resolved_at__gte=self.resolved_since)
        if self.q:
            pattern = Value(f"%{like_escape(self.q)}%")
            qs = qs.filter(Q(Search(F("title"), pattern)) | Q(Search(F("subject_name"), pattern)))
        if self.exception is not None:
            qs = qs.filter(exception_id=self.exception)
        if self.finding is not None:
            qs = qs.filter(pk=self.finding)
        return qs

    def matches(self, finding: Any, host: Any) -> bool:
        """``apply`` in Python, for one finding of ``host`` (reconciliation, coverage)."""
        if self.status != "all" and finding.status != self.status:
            return False
        labels = host.labels or {}
        checks: Iterable[bool] = (
            not self.rules or finding.rule_id in self.rules,
            not self.cis or finding.cis == self.cis,
            not self.severity or Severity(finding.severity).rank >= self.severity.rank,
            not self.up_to or Severity(finding.severity).rank <= self.up_to.rank,
            not self.hosts or host.name in self.hosts,
            all(k in labels and str(labels[k]) == v for k, v in self.labels.items()),
            not self.container_only or finding.subject_type == SubjectType.CONTAINER,
            not self.image or bool(glob_regex(self.image).match(finding.image)),
            not self.project or finding.compose_project == self.project,
            not self.name or bool(glob_regex(self.name).match(finding.subject_name)),
            not self.since or finding.first_seen >= self.since,
            not self.resolved_since or (finding.resolved_at is not None and finding.resolved_at >= self.resolved_since),
            not self.q or self.q.upper() in finding.title.upper() or self.q.upper() in finding.subject_name.upper(),
            self.exception is None or finding.exception_id == self.exception,
            self.finding is None or finding.pk == self.finding,
        )
        return all(checks)


def at_most(severity: Severity) -> list[Severity]:
    """This severity and every milder one."""
    return [s for s in Severity if s.rank <= severity.rank]


def _getter(params: Mapping[str, Any] | Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    if callable(params):
        return params
    if hasattr(params, "getlist"):
        return params.getlist

    def getlist(key: str) -> list[str]:
        value = params.get(key)
        if value is None or value == "":
            return []
        if isinstance(value, list | tuple):
            return [str(v) for v in value if v is not None]
        return [str(value)]

    return getlist
