"""What scripts/release.sh needs Python for: the licences of what ships, and what the image really holds.

    python -m scripts.release_files licences SITE_PACKAGES OUT.txt [PROJECT_LICENSE]
        one text file: a table of every distribution installed in SITE_PACKAGES (name, version, declared
        licence), then each one's licence files as the distribution ships them, then the project's own
    python -m scripts.release_files image-packages OCI_ARCHIVE
        the Python distributions in the image's /opt/venv, one `name==version` a line (read from the
        archive's layers, no container runtime needed)
    python -m scripts.release_files retag ARCHIVE OUT REFERENCE
        a copy of an OCI archive whose index names its image REFERENCE (`podman load` stores it under that
        name); every blob is copied as it is
    python -m scripts.release_files sbom-packages SBOM.json
        the root component and the components of a CycloneDX SBOM, one `name==version` a line

Names are normalised as PEP 503 does (lower case, runs of -_. as one -), so the lists compare as sets.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
import tarfile
from importlib import metadata
from pathlib import Path

# PEP 639 puts licence files under .dist-info/licenses/; older wheels put LICENSE & co. in .dist-info itself
LICENCE_FILE = re.compile(
    r"\.dist-info/(licenses/.+|(LICEN[CS]E|COPYING|NOTICE|AUTHORS)[^/]*)$", re.IGNORECASE
)
REF_NAME = "org.opencontainers.image.ref.name"
DIST_INFO = re.compile(r"^/?opt/venv/lib/python3[^/]*/site-packages/([^/]+)-([^/-]+)\.dist-info/METADATA$")


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_licence(dist: metadata.Distribution) -> str:
    """The licence a distribution declares: its SPDX expression, else its License field when short, else
    its licence classifiers."""
    meta = dist.metadata
    expression = meta["License-Expression"]
    if expression:
        return str(expression)
    text = (meta["License"] or "").strip()
    if text and "\n" not in text and len(text) <= 80:
        return text
    classifiers = [
        c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")
    ]
    return ", ".join(classifiers) or "not declared (see its licence files below)"


def licences(site_packages: Path, out: Path, project_licence: Path | None) -> int:
    dists = sorted(metadata.distributions(path=[str(site_packages)]), key=lambda d: normalised(d.name))
    if not dists:
        print(f"no Python distributions in {site_packages}", file=sys.stderr)
        return 1
    lines = [
        "Licences of the Python environment that ships in the airflow-migration-webhook image (/opt/venv).",
        "The base image's own packages (Debian) carry theirs in /usr/share/doc/*/copyright inside the image.",
        "",
    ]
    width = max(len(d.name) for d in dists)
    lines += [f"{d.name:<{width}}  {d.version:<14}  {declared_licence(d)}" for d in dists]
    for dist in dists:
        files = [f for f in dist.files or [] if LICENCE_FILE.search(str(f))]
        lines += ["", "=" * 100, f"{dist.name} {dist.version}: {declared_licence(dist)}", "=" * 100]
        if not files:
            lines.append("(the distribution ships no licence file)")
        for file in sorted(files, key=str):
            lines += [
                f"--- {Path(str(file)).name}",
                Path(str(dist.locate_file(file))).read_text(errors="replace").rstrip(),
            ]
    if project_licence is not None:
        lines += [
            "",
            "=" * 100,
            "airflow-migration-webhook: Apache-2.0",
            "=" * 100,
            project_licence.read_text(),
        ]
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return 0


def _blob(layout: tarfile.TarFile, digest: str) -> bytes:
    algorithm, value = digest.split(":", 1)
    member = layout.extractfile(f"blobs/{algorithm}/{value}")
    if member is None:
        raise SystemExit(f"the archive has no blob {digest}")
    return member.read()


def image_packages(archive: Path) -> list[str]:
    """name==version of every dist-info in the image's venv, over all layers (a later layer's whiteout is
    not expected: the venv is written by one COPY)."""
    found = set()
    with tarfile.open(archive) as layout:
        index = json.loads(_blob_or_file(layout, "index.json"))
        for descriptor in index["manifests"]:
            manifest = json.loads(_blob(layout, descriptor["digest"]))
            for layer in manifest["layers"]:
                data = _blob(layout, layer["digest"])
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                with tarfile.open(fileobj=io.BytesIO(data)) as files:
                    for name in files.getnames():
                        match = DIST_INFO.match(name)
                        if match:
                            found.add(f"{normalised(match.group(1))}=={match.group(2)}")
    return sorted(found)


def _blob_or_file(layout: tarfile.TarFile, name: str) -> bytes:
    member = layout.extractfile(name)
    if member is None:
        raise SystemExit(f"not an OCI archive: no {name}")
    return member.read()


def retag(archive: Path, out: Path, reference: str) -> None:
    with tarfile.open(archive) as source, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "index.json" and data is not None:
                index = json.loads(data.read())
                for descriptor in index["manifests"]:
                    descriptor.setdefault("annotations", {})[REF_NAME] = reference
                text = json.dumps(index, separators=(",", ":")).encode()
                member.size = len(text)
                data = io.BytesIO(text)
            target.addfile(member, data)


def sbom_packages(sbom: Path) -> list[str]:
    """The root component (the project) and every other component."""
    document = json.loads(sbom.read_text(encoding="utf-8"))
    components = [document["metadata"]["component"], *document.get("components", [])]
    return sorted(f"{normalised(c['name'])}=={c.get('version', '(no version)')}" for c in components)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.release_files", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lic = sub.add_parser("licences")
    lic.add_argument("site_packages", type=Path)
    lic.add_argument("out", type=Path)
    lic.add_argument("project_licence", type=Path, nargs="?")
    sub.add_parser("image-packages").add_argument("archive", type=Path)
    sub.add_parser("sbom-packages").add_argument("sbom", type=Path)
    tag = sub.add_parser("retag")
    tag.add_argument("archive", type=Path)
    tag.add_argument("out", type=Path)
    tag.add_argument("reference")
    args = parser.parse_args(argv)
    if args.command == "licences":
        return licences(args.site_packages, args.out, args.project_licence)
    if args.command == "retag":
        retag(args.archive, args.out, args.reference)
        return 0
    packages = image_packages(args.archive) if args.command == "image-packages" else sbom_packages(args.sbom)
    print("\n".join(packages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
