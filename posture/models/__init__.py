from .audit import AuditAction, AuditEntry
from .choices import EventKind, FindingStatus, HostStatus, PollStatus, Severity, SubjectType, severity_rank
from .findings import Finding, FindingEvent, RiskAcceptance, RiskSample
from .hosts import DockerHost, Snapshot, validate_engine
from .inventory import ContainerRecord, NetworkRecord, PublishedPort
from .polls import PollRun
from .reports import Frequency, Report, ReportSchedule, ReportStatus

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
    "RiskAcceptance",
    "RiskSample",
    "Severity",
    "Snapshot",
    "SubjectType",
    "severity_rank",
    "validate_engine",
]
