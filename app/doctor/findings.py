"""Findings: one code per finding (like the engine's reason codes), a severity, the evidence and one fix.

The JSON form is stable (documented in the README): add keys, never rename or remove them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

JSON_VERSION = 1


class Severity(StrEnum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"


class Code(StrEnum):
    """What doctor found. Workload findings carry the engine's own reason codes instead."""

    WEBHOOK_MISSING = "webhook_missing"
    WEBHOOK_FOUND = "webhook_found"
    ENDPOINTS_READY = "endpoints_ready"
    ENDPOINTS_NOT_READY = "endpoints_not_ready"
    SERVICE_MISSING = "service_missing"
    CA_BUNDLE_OK = "ca_bundle_ok"
    CA_BUNDLE_MISMATCH = "ca_bundle_mismatch"
    CA_BUNDLE_MISSING = "ca_bundle_missing"
    CERTIFICATE_UNREAD = "certificate_unread"
    CERTIFICATE_EXPIRING = "certificate_expiring"
    CERTIFICATE_EXPIRED = "certificate_expired"
    MATCH_CONDITIONS_UNSUPPORTED = "match_conditions_unsupported"
    NAMESPACE_SELECTED = "namespace_selected"
    NAMESPACE_NOT_SELECTED = "namespace_not_selected"
    NAMESPACE_MISSING = "namespace_missing"
    NO_AIRFLOW = "no_airflow"
    POD_READY = "pod_ready"
    POD_STUCK_IN_INIT = "pod_stuck_in_init"
    STEP_FAILED = "step_failed"
    WAITING_WITHOUT_STEP = "waiting_without_step"
    JOB_SUCCEEDED = "job_succeeded"
    JOB_RUNNING = "job_running"
    JOB_FAILED = "job_failed"
    ARGOCD_WAITING = "argocd_waiting"
    ARGOCD_OPERATION = "argocd_operation"


@dataclass(frozen=True)
class Finding:
    check: str  # webhook | namespace | workload | pod | job | argocd
    subject: str  # Kind/namespace/name
    severity: Severity
    code: str  # a Code, or an engine reason code for workloads
    message: str
    evidence: tuple[str, ...] = ()
    fix: str = ""  # one command (or instruction) that addresses it


# What blocks what, most blocking first: a webhook the API server cannot use blocks every object, a namespace
# it never sees blocks that namespace, a failing step blocks every pod that waits for its migration, a
# workload without the step makes pods that wait, and the Job's or Argo CD's state follows from all that.
_CAUSE_ORDER: tuple[str, ...] = ("webhook", "namespace", Code.STEP_FAILED, "workload", "pod", "job", "argocd")


def _cause_rank(finding: Finding) -> int:
    for key in (finding.code, finding.check):
        if key in _CAUSE_ORDER:
            return _CAUSE_ORDER.index(key)
    return len(_CAUSE_ORDER)


@dataclass(frozen=True)
class Report:
    namespaces: list[str]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def likely_cause(self) -> Finding | None:
        """The problem that blocks the others (_CAUSE_ORDER; found first among equals), else a warning."""
        for group in (self.problems, self.warnings):
            if group:
                return min(group, key=_cause_rank)  # min keeps the first of equal ranks
        return None

    @property
    def fixes(self) -> list[str]:
        """One command per problem (then per warning), without repeats, the likely cause's first."""
        ordered = [
            f.fix for group in (self.problems, self.warnings) for f in sorted(group, key=_cause_rank) if f.fix
        ]
        return list(dict.fromkeys(ordered))

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def to_json(self) -> dict[str, Any]:
        cause = self.likely_cause
        return {
            "version": JSON_VERSION,
            "namespaces": self.namespaces,
            "findings": [_finding_json(f) for f in self.findings],
            "notes": self.notes,
            "summary": {
                "problems": len(self.problems),
                "warnings": len(self.warnings),
                "likely_cause": _finding_json(cause) if cause else None,
                "fixes": self.fixes,
            },
        }


def _finding_json(finding: Finding) -> dict[str, Any]:
    data = asdict(finding)
    data["severity"] = finding.severity.value
    data["evidence"] = list(finding.evidence)
    return data


_TABLE_EVIDENCE_LINES = 3
_NUMBERS = re.compile(r"\d+")


def _collapsed(evidence: tuple[str, ...]) -> list[str]:
    """Runs of lines that differ only in their numbers (timestamps, counters: `Waiting for migrations... 10
    second(s)` ... `19 second(s)`) as one line, then the last few: `-o json` keeps every line."""
    runs: list[list[str]] = []
    for line in evidence:
        if runs and _NUMBERS.sub("#", runs[-1][0]) == _NUMBERS.sub("#", line):
            runs[-1].append(line)
        else:
            runs.append([line])
    lines = [run[0] if len(run) == 1 else f"{run[-1]} ({len(run)} similar lines)" for run in runs]
    if len(lines) > _TABLE_EVIDENCE_LINES:
        hidden = len(lines) - _TABLE_EVIDENCE_LINES + 1
        lines = [f"... {hidden} earlier line(s) (-o json shows them)", *lines[-_TABLE_EVIDENCE_LINES + 1 :]]
    return lines


def render_table(report: Report) -> str:
    rows = [("CHECK", "SUBJECT", "RESULT", "CODE", "MESSAGE")]
    evidence: dict[int, tuple[str, ...]] = {}
    for finding in report.findings:
        evidence[len(rows)] = finding.evidence
        rows.append((finding.check, finding.subject, finding.severity.value, finding.code, finding.message))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join([*(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4]]).rstrip()
        )
        lines += [f"{'':{widths[0]}}  | {line}" for line in _collapsed(evidence.get(index, ()))]
    for note in report.notes:
        lines.append(f"note: {note}")
    lines.append("")
    cause = report.likely_cause
    if cause is None:
        lines.append("No problem found.")
    else:
        lines.append(f"Likely cause: {cause.subject}: {cause.message}")
    summary = f"{len(report.problems)} problem(s), {len(report.warnings)} warning(s)"
    lines.append(summary)
    if report.fixes:
        lines.append("Suggested fixes, in order:")
        lines += [f"  {fix}" for fix in report.fixes]
    return "\n".join(lines) + "\n"
