"""The Airflow version an image runs, read from its tag, and the migrate command that version needs."""

from __future__ import annotations

import re

from app.engine.objects import image_tag

# `2.9.3`, `3.0.1-debian-12-r1`, `2.10.5-python3.11`, `slim-2.10.5`; not the `3.11` of `python3.11`.
_VERSION_IN_TAG = re.compile(r"(?<![A-Za-z0-9.])v?(\d+)\.(\d+)(?:\.(\d+))?")
FIRST_MIGRATE_VERSION = (2, 7)


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
