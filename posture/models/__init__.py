from .audit import AuditAction, AuditEntry
from .choices import EventKind, FindingStatus, HostStatus, PollStatus, Severity, SubjectType, severity_rank
from .findings import Finding, FindingEvent, RiskAcceptance, RiskSample
from .hosts import DockerHost, PollRun, Snapshot, validate_engine
from .inventory import ContainerRecord, NetworkRecord, PublishedPort
from .reports import Frequency, Report, ReportSchedule, ReportStatus
from .retention import RetentionMark

__all__ = [
    "AuditAction",
    "AuditEntry",
    "ContainerRecord",
    "DockerHost",
    "EventKind",
    "Finding",
    "FindingEvent",
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
    "RetentionMark",
    "RiskAcceptance",
    "RiskSample",
    "Severity",
    "Snapshot",
    "SubjectType",
    "severity_rank",
    "validate_engine",
]
