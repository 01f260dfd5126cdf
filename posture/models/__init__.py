from .audit import AuditAction, AuditEntry
from .choices import EventKind, ExceptionStatus, FindingStatus, HostStatus, PollStatus, Severity, SubjectType, severity_rank
from .exceptions import Coverage, RiskException
from .filters import FilterError, FindingFilter
from .findings import Finding, FindingEvent, RiskSample
from .hosts import DockerHost, PollRun, Snapshot, validate_engine
from .inventory import ContainerRecord, NetworkRecord, PublishedPort
from .reports import Frequency, Report, ReportSchedule, ReportStatus

__all__ = [
    "AuditAction",
    "AuditEntry",
    "ContainerRecord",
    "Coverage",
    "DockerHost",
    "EventKind",
    "ExceptionStatus",
    "FilterError",
    "Finding",
    "FindingEvent",
    "FindingFilter",
    "FindingStatus",
    "Frequency",
    "HostStatus",
    "NetworkRecord",
    "PollRun",
    "PollStatus",
    "PublishedPort",
    "Report",
    "ReportSchedule",
    "ReportStatus",
    "RiskException",
    "RiskSample",
    "Severity",
    "Snapshot",
    "SubjectType",
    "severity_rank",
    "validate_engine",
]
