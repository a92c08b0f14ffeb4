"""One version everywhere, and what `scripts/release.sh --dry-run` wrote to dist/ (scripts/test.sh runs it
before pytest, which has no network: the SBOM's environment is installed from PyPI the first time).

The dist/ checks are against the tree as it is now: the packaged chart must hold the chart's current files,
the SBOM the current locks, so a dist/ left from another tree fails with the command that remakes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import app
from scripts import release_files
from tests.support import REPO

CHART = REPO / "charts" / "airflow-migration-webhook"
DIST = REPO / "dist"
HELM = REPO / ".cache" / "bin" / "helm"
VERSION = app.__version__
NAME = f"airflow-migration-webhook-{VERSION}"
REMAKE = "run scripts/release.sh --dry-run (scripts/test.sh does)"
LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s\\]+)", re.M)


def chart_yaml() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return loaded


def test_one_version_for_the_package_the_chart_and_the_image() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)
    assert metadata.version("airflow-migration-webhook") == VERSION  # pyproject.toml reads app/__init__.py
    chart = chart_yaml()
    assert chart["version"] == VERSION
    assert chart["appVersion"] == VERSION
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == "", "image.tag defaults to the chart's appVersion: leave it empty"
    annotations = chart["annotations"]
    assert isinstance(annotations, dict)
    (image,) = yaml.safe_load(annotations["artifacthub.io/images"])
    assert image["image"] == f"{values['image']['repository']}:{VERSION}"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(rf"^ARG VERSION={re.escape(VERSION)}$", dockerfile, re.M), "Dockerfile's ARG VERSION"
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"\n## [{VERSION}] - " in changelog or "\n## [Unreleased]" in changelog


def test_commands_in_the_docs_name_the_current_version() -> None:
    """Install commands a reader pastes: image tags and chart versions are the current one."""
    pages = [REPO / "README.md", CHART / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    pattern = re.compile(
        r"(?:airflow-migration-webhook:|image\.tag=|tag: \"|\"version\":\")(\d+\.\d+\.\d+)(?![\d.])"
    )
    seen = 0
    for page in pages:
        for found in pattern.finditer(page.read_text()):
            seen += 1
            assert found.group(1) == VERSION, f"{page.relative_to(REPO)} names {found.group(0)}"
    assert seen >= 5


def dist_file(name: str) -> Path:
    path = DIST / name
    if not path.exists():
        pytest.fail(f"no {path.relative_to(REPO)}: {REMAKE}")
    return path


def test_dist_checksums_cover_every_file() -> None:
    sums = dist_file("SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in sums:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert set(listed) == {path.name for path in DIST.iterdir()} - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert hashlib.sha256((DIST / name).read_bytes()).hexdigest() == digest, name
    assert {f"{NAME}.tgz", f"{NAME}.cdx.json", "THIRD-PARTY-LICENSES.txt"} <= set(listed)


def test_dist_chart_is_the_current_chart_and_renders() -> None:
    archive = dist_file(f"{NAME}.tgz")
    with tarfile.open(archive) as packaged:
        inside = {
            member.name.removeprefix("airflow-migration-webhook/"): packaged.extractfile(member).read()  # type: ignore[union-attr]
            for member in packaged.getmembers()
            if member.isfile()
        }
    current = {str(path.relative_to(CHART)): path.read_bytes() for path in CHART.rglob("*") if path.is_file()}
    assert inside.keys() == current.keys(), REMAKE
    for name, data in current.items():
        if name == "Chart.yaml":  # helm package rewrites it; compare its content
            assert yaml.safe_load(inside[name]) == yaml.safe_load(data), f"{name} differs: {REMAKE}"
        else:
            assert inside[name] == data, f"{name} differs from the chart: {REMAKE}"
    if not HELM.exists():
        pytest.fail("helm not found: run scripts/install-helm.sh (scripts/test.sh does)")
    rendered = subprocess.run(
        [str(HELM), "template", "amw", str(archive), "--namespace", "amw", "--kube-version", "1.32.0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "MutatingWebhookConfiguration", "PodDisruptionBudget"} <= kinds
    (deployment,) = (doc for doc in docs if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    repository = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    assert container["image"] == f"{repository}:{VERSION}"


def locked(lock: str) -> dict[str, str]:
    text = (REPO / "requirements" / lock).read_text()
    return {release_files.normalised(name): version for name, version in LOCKED.findall(text)}


def test_dist_sbom_lists_the_locked_versions() -> None:
    sbom = json.loads(dist_file(f"{NAME}.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    root = sbom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("airflow-migration-webhook", VERSION)
    components = {release_files.normalised(c["name"]): c for c in sbom["components"]}
    expected = locked("runtime.lock")
    assert {name: c["version"] for name, c in components.items()} == expected, REMAKE
    assert "setuptools" not in components and "pip" not in components  # build tools do not ship
    for name, component in components.items():
        assert component["purl"] == f"pkg:pypi/{name}@{expected[name]}"
        assert component.get("licenses"), f"{name}: the SBOM records no licence"


def test_dist_licences_cover_what_ships() -> None:
    text = dist_file("THIRD-PARTY-LICENSES.txt").read_text()
    table = text.split("\n\n=", 1)[0]
    rows = {release_files.normalised(line.split()[0]): line.split()[1] for line in table.splitlines()[3:]}
    assert rows == {**locked("runtime.lock"), "airflow-migration-webhook": VERSION}
    assert text.count("\n" + "=" * 100 + "\n") >= 2 * len(rows)
    assert text.rstrip().endswith((REPO / "LICENSE").read_text().rstrip())


def test_dist_image_is_named_for_the_release_and_holds_the_sbom() -> None:
    archive = DIST / f"{NAME}.oci.tar"
    if not archive.exists():
        pytest.skip("no image in this dist/ (scripts/release.sh --skip-image, as FAST=1 runs it)")
    with tarfile.open(archive) as layout:
        member = layout.extractfile("index.json")
        assert member is not None
        index = json.load(io.BytesIO(member.read()))
    repository = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    (manifest,) = index["manifests"]
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == f"{repository}:{VERSION}"
    packages = release_files.image_packages(archive)
    assert packages == release_files.sbom_packages(DIST / f"{NAME}.cdx.json")


def test_release_refuses_bad_arguments_and_a_folder_it_did_not_write(tmp_path: Path) -> None:
    script = str(REPO / "scripts" / "release.sh")
    usage = subprocess.run(["bash", script, "--publish"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage: scripts/release.sh" in usage.stderr
    (tmp_path / "notes.txt").write_text("mine")
    refused = subprocess.run(
        ["bash", script, "--dry-run", "--skip-image", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1, refused.stderr
    assert "not a release folder, left alone" in refused.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
