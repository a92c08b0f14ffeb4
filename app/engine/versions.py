"""The Airflow version an image runs, read from its tag, and the migrate command that version needs."""

from __future__ import annotations

import re
from collections.abc import Callable

from app.engine.objects import image_tag
from app.engine.profiles import AIRFLOW_1_COMMAND, matches

# `2.9.3`, `3.0.1-debian-12-r1`, `2.10.5-python3.11`, `slim-2.10.5`; not the `3.11` of `python3.11`.
_VERSION_IN_TAG = re.compile(r"(?<![A-Za-z0-9.])v?(\d+)\.(\d+)(?:\.(\d+))?")
FIRST_MIGRATE_VERSION = (2, 7)
FIRST_SUPPORTED_MAJOR = 2  # `airflow db check`, `db check-migrations`, `db upgrade`: Airflow 2.0 on


def airflow_version(image: str) -> tuple[int, int, int] | None:
    tag = image_tag(image)
    if not tag:
        return None
    found = _VERSION_IN_TAG.search(tag)
    if found is None:
        return None
    major, minor, patch = found.groups()
    if not 1 <= int(major) <= 9:
        return None
    return int(major), int(minor), int(patch or 0)


def migrate_subcommand(version: tuple[int, int, int] | None) -> str:
    """`db migrate` from 2.7 on (and when unknown: every current image), `db upgrade` before."""
    if version is not None and version[:2] < FIRST_MIGRATE_VERSION:
        return "upgrade"
    return "migrate"


def airflow_1_evidence(image: str, command_lines: Callable[[], list[str]]) -> str | None:
    """Why a pod runs Airflow 1.x (which has no `airflow db` commands), None when nothing says so: its
    Airflow image's tag of version 1; when the tag tells no version, a command only Airflow 1 has (the
    commands, kilobytes of chart scripts, are read only then)."""
    version = airflow_version(image)
    if version is not None:
        if version[0] >= FIRST_SUPPORTED_MAJOR:
            return None
        return f"image {image} runs Airflow {'.'.join(map(str, version))}"
    for line in command_lines():
        found = matches(AIRFLOW_1_COMMAND, line)
        if found is not None:
            return f"the pod runs `airflow {found.group(1)}`, an Airflow 1.x command"
    return None
