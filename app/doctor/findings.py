"""Findings: one code per finding (like the engine's reason codes), a severity, the evidence, one fix (a
command that changes the situation) and one command to look at (a diagnostic that changes nothing).

The JSON form is stable (documented in docs/troubleshooting.md): add keys, never rename or remove them.
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
    POD_PENDING = "pod_pending"
    POD_FAILED = "pod_failed"
    STEP_FAILED = "step_failed"
    WAITING_WITHOUT_STEP = "waiting_without_step"
    JOB_SUCCEEDED = "job_succeeded"
    JOB_RUNNING = "job_running"
    JOB_FAILED = "job_failed"
    JOB_PENDING = "job_pending"
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
    fix: str = ""  # one shell command that changes the situation ($NAME: a value only the user knows, INPUTS)
    look_at: str = ""  # one read-only command that shows more (logs, describe)


# Values a fix needs that doctor cannot know, as the shell variables the fixes use: set them, then the fixes
# run as printed. The summary lists the ones its fixes use.
INPUTS: dict[str, str] = {
    "CHART": "the webhook's chart: the folder charts/airflow-migration-webhook of a checkout of this "
    "project (no chart repository publishes it); under Argo CD, set the same values in the Application "
    "instead",
    "IMAGE_REPOSITORY": "where you pushed the image built from the project's Dockerfile (README, "
    '"Install in a cluster"), e.g. registry.example.com/airflow-migration-webhook',
    "IMAGE_TAG": "that image's tag, e.g. 0.1.0",
    "CERTS_DIR": "the folder holding the webhook's CA as `airflow-migration-webhook certs` wrote it "
    "(ca.crt and ca.key), e.g. certs",
}
_INPUT = re.compile(r"\$\{?([A-Z_]+)\}?")


# What blocks what, most blocking first: a webhook the API server cannot use blocks every object, a namespace
# it never sees blocks that namespace, a failing step blocks every pod that waits for its migration, a
# workload without the step makes pods that wait, and the Job's or Argo CD's state follows from all that.
_CAUSE_ORDER: tuple[str, ...] = ("webhook", "namespace", Code.STEP_FAILED, "workload", "pod", "job", "argocd")


def _cause_rank(finding: Finding) -> int:
    for key in (finding.code, finding.check):
        if key in _CAUSE_ORDER:
            return _CAUSE_ORDER.index(key)
    return len(_CAUSE_ORDER)


def blocking_cause(findings: list[Finding]) -> Finding | None:
    """The problem that blocks the others (_CAUSE_ORDER; the first found among equals), else a warning."""
    for severity in (Severity.PROBLEM, Severity.WARNING):
        group = [f for f in findings if f.severity is severity]
        if group:
            return min(group, key=_cause_rank)  # min keeps the first of equal ranks
    return None


def _by_cause(findings: list[Finding]) -> list[Finding]:
    """Problems, then warnings, each most blocking first."""
    return [
        f
        for severity in (Severity.PROBLEM, Severity.WARNING)
        for f in sorted((f for f in findings if f.severity is severity), key=_cause_rank)
    ]


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
        return blocking_cause(self.findings)

    @property
    def fixes(self) -> list[str]:
        """The commands that change the situation, one per problem (then per warning), without repeats, the
        likely cause's first."""
        return list(dict.fromkeys(f.fix for f in _by_cause(self.findings) if f.fix))

    @property
    def look_at(self) -> list[str]:
        """The read-only commands that show more, in the same order."""
        return list(dict.fromkeys(f.look_at for f in _by_cause(self.findings) if f.look_at))

    @property
    def inputs(self) -> dict[str, str]:
        """The values the fixes need that only the user knows (INPUTS), by the variable the fixes use."""
        used = {name for fix in self.fixes for name in _INPUT.findall(fix)}
        return {name: meaning for name, meaning in INPUTS.items() if name in used}

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
                "look_at": self.look_at,
                "inputs": self.inputs,
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
    lines.append(f"{len(report.problems)} problem(s), {len(report.warnings)} warning(s)")
    if report.look_at:
        lines.append("Look at:")
        lines += [f"  {command}" for command in report.look_at]
    if report.inputs:
        lines.append("Set first: values only you know, which the fixes use (e.g. export CHART=...):")
        lines += [f"  {name}: {meaning}" for name, meaning in report.inputs.items()]
    if report.fixes:
        lines.append("Suggested fixes, in order:")
        lines += [f"  {fix}" for fix in report.fixes]
    return "\n".join(lines) + "\n"
