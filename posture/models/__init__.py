from .alerts import AlertEvent, AlertRule, Channel, ChannelKind, Notification, NotificationStatus, NotifiedTransition, Transition
from .audit import AuditAction, AuditEntry
from .choices import EventKind, ExceptionStatus, FindingStatus, HostStatus, PollStatus, Severity, SubjectType, severity_rank
from .exceptions import Coverage, RiskException
from .filters import FilterError, FindingFilter
from .findings import Finding, FindingEvent, RiskSample
from .hosts import DockerHost, Snapshot, validate_engine
from .inventory import ContainerRecord, NetworkRecord, PublishedPort
from .polls import PollRun
from .reports import Frequency, Report, ReportSchedule, ReportStatus
from .retention import RetentionMark
from .tokens import ApiToken
from .watch import HostWatch, Watcher

__all__ = [
    "AlertEvent",
    "AlertRule",
    "ApiToken",
    "Channel",
    "ChannelKind",
    "Notification",
    "NotificationStatus",
    "NotifiedTransition",
    "Transition",
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
    "HostWatch",
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
    "RiskException",
    "RiskSample",
    "Severity",
    "Snapshot",
    "SubjectType",
    "Watcher",
    "severity_rank",
    "validate_engine",
]
