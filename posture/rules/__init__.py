"""``HostSnapshot`` → findings. One small function per rule, metadata beside it. No Django."""

from .base import Check, FindingSpec, Rule, Severity, SubjectType
from .catalog import BY_ID, KNOWN_GAPS, RULES, Evaluation, evaluate, evaluate_all

__all__ = ["BY_ID", "KNOWN_GAPS", "RULES", "Check", "Evaluation", "FindingSpec", "Rule", "Severity", "SubjectType", "evaluate", "evaluate_all"]
