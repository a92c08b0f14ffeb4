"""Run a Bitnami Airflow pod's init containers as the image runs them, with Bitnami's real shell library.

Each container runs in a private mount namespace (`unshare -m`) inside a root built for it, so the host's
`/opt` and `/` are never touched:

- `/` is a tmpfs holding the host's `/usr` and `/etc` read-only (the OS part of the image) and, read-only, the
  image's `/opt/bitnami`: `scripts/` with Bitnami's real libraries of the image line (tests/fixtures/bitnami:
  the common ones, then the line's), `airflow/venv` with a real Airflow of the image's version and the
  providers the image ships, and `common/bin/ini-file` (emulated: see INI_FILE). The root is remounted
  read-only before the container starts, so anything it writes outside its volumes fails as in the pod.
- the pod's volumes are folders of the pod (emptyDir; configMap and projected secrets filled from the chart
  render's objects) mounted at each container's `volumeMounts`, `subPath` included;
- `/etc/passwd` and `/etc/group` are the host's plus the image's `airflow` user (uid/gid 1001);
- the process runs as uid/gid 1001 with group 1001 (the chart's `fsGroup`), no new privileges, the image's
  PATH and HOME, and the container's env from the pod spec (literal values; the Bitnami charts use no others
  in these containers).

Not emulated: the image's entrypoint (init containers set `command`), nss_wrapper, resource limits,
restarts, probes. `ini-file` (Bitnami's binary, not published) is replaced by a small script that does the one
thing `prepare-config` asks of it: `ini-file set --section=S --key=K --value=V -- FILE`.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.podrunner import PodRun, run_container
from tests.support import BITNAMI_SCRIPTS

UID = 1001
IMAGE_PATH = (
    "/opt/bitnami/common/bin:/opt/bitnami/airflow/venv/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

# Emulates Bitnami's `ini-file set` (the only verb `prepare-config` uses): set KEY in [SECTION], in place,
# keeping every other line; the section is appended when missing.
INI_FILE = r"""#!/usr/bin/python3
import re, sys
args = sys.argv[1:]
if not args or args[0] != "set":
    sys.exit("ini-file emulation: only `set` is implemented")
opts = dict(a[2:].split("=", 1) for a in args[1:] if a.startswith("--") and "=" in a)
path = args[-1]
section, key, value = opts["section"], opts["key"], opts["value"]
lines = open(path).read().splitlines()
out, current, done = [], None, False
for line in lines:
    header = re.match(r"\s*\[([^]]+)\]", line)
    if header:
        if current == section and not done:
            out.append(f"{key} = {value}")
            done = True
        current = header.group(1)
    elif current == section and re.match(rf"\s*{re.escape(key)}\s*=", line) and not done:
        out.append(f"{key} = {value}")
        done = True
        continue
    out.append(line)
if not done:
    if current != section:
        out.append(f"[{section}]")
    out.append(f"{key} = {value}")
open(path, "w").write("\n".join(out) + "\n")
"""


@dataclass
class BitnamiImage:
    """The parts of a Bitnami Airflow image that differ per image line."""

    line: str  # "airflow2" or "airflow3": which of Bitnami's libraries
    venv: Path  # a real Airflow of the image's version with the image's providers

    def python_prefix(self) -> Path:
        home = next(
            line.split("=", 1)[1].strip()
            for line in (self.venv / "pyvenv.cfg").read_text().splitlines()
            if line.startswith("home")
        )
        return Path(home).parent


@dataclass
class BitnamiPod:
    """One pod: its spec (after the webhook), the render's ConfigMaps and Secrets, a scratch folder."""

    spec: dict[str, Any]
    image: BitnamiImage
    config_maps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]
    scratch: Path
    extra_env: dict[str, str] = field(default_factory=dict)  # applied last (e.g. to shorten waits)

    def _volumes(self) -> dict[str, Path]:
        root = self.scratch / "volumes"
        paths = {}
        for volume in self.spec.get("volumes", []):
            path = root / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            files: dict[str, str] = {}
            if "configMap" in volume:
                files = self.config_maps.get(volume["configMap"]["name"], {})
            elif "secret" in volume:
                files = self.secrets[volume["secret"]["secretName"]]
            elif "projected" in volume:
                for source in volume["projected"]["sources"]:
                    if "secret" in source:
                        files.update(self.secrets[source["secret"]["name"]])
            elif "emptyDir" not in volume:
                raise NotImplementedError(f"volume {volume['name']} is not emulated")
            for name, content in files.items():
                (path / name).write_text(content)
                (path / name).chmod(0o644)
            os.chown(path, 0, UID)
            path.chmod(0o2777 if "emptyDir" in volume else 0o755)
            paths[volume["name"]] = path
        return paths

    def _setup_script(self, container: dict[str, Any], volumes: dict[str, Path], root: Path) -> str:
        """Shell run as root in the container's new mount namespace; it ends by exec-ing the container."""
        venv, prefix = self.image.venv, self.image.python_prefix()
        q = shlex.quote
        lines = [
            "set -eu",
            f"R={q(str(root))}",
            'mount -t tmpfs -o mode=755 tmpfs "$R"',
            'for d in usr etc; do mkdir "$R/$d"; mount --rbind "/$d" "$R/$d";',
            '  mount -o remount,bind,ro "$R/$d"; done',
            "for d in bin sbin lib lib64; do",
            '  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"; fi; done',
            'mkdir -p "$R/dev" "$R/proc" "$R/tmp" "$R/opt/bitnami/scripts" "$R/opt/bitnami/common/bin"',
            # the image's `airflow` user is uid 1001 (Airflow's CLI refuses a uid without a name)
            f'mount --bind {q(str(self._account_file("passwd")))} "$R/etc/passwd"',
            f'mount --bind {q(str(self._account_file("group")))} "$R/etc/group"',
            'mount --rbind /dev "$R/dev"',
            'mount --rbind /proc "$R/proc"',
        ]
        # the base Python and the venv at their own paths (shebangs and pyvenv.cfg point there), read-only
        for path in (prefix, venv):
            lines += [
                f'mkdir -p "$R"{q(str(path))}',
                f'mount --bind {q(str(path))} "$R"{q(str(path))}',
                f'mount -o remount,bind,ro "$R"{q(str(path))}',
            ]
        lines += [
            'mkdir -p "$R/opt/bitnami/airflow/venv"',
            f'mount --bind {q(str(venv))} "$R/opt/bitnami/airflow/venv"',
            'mount -o remount,bind,ro "$R/opt/bitnami/airflow/venv"',
        ]
        # the image's scripts: the common libraries, then the line's
        for folder in (BITNAMI_SCRIPTS / "common", BITNAMI_SCRIPTS / self.image.line / "opt/bitnami/scripts"):
            for script in sorted(folder.glob("*.sh")):
                lines.append(f'cp {q(str(script))} "$R/opt/bitnami/scripts/"')
        # what the image's build left in AIRFLOW_HOME: `airflow_generate_config` copies Airflow's default
        # webserver_config.py there (Airflow 2.6 writes it at import when missing: a read-only root refuses)
        defaults = sorted(
            venv.glob("lib/python*/site-packages/airflow/config_templates/default_webserver_config.py")
        )
        lines += [
            *(f'cp {q(str(path))} "$R/opt/bitnami/airflow/webserver_config.py"' for path in defaults[:1]),
            f"cat > \"$R/opt/bitnami/common/bin/ini-file\" <<'INI'\n{INI_FILE}INI",
            'chmod 755 "$R/opt/bitnami/common/bin/ini-file"',
        ]
        for mount in container.get("volumeMounts", []):
            source = volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
            target = mount["mountPath"]
            if not source.exists():  # a kubelet creates a missing subPath as a folder
                source.mkdir(parents=True)
                os.chown(source, 0, UID)
                source.chmod(0o2777)
            make = "touch" if source.is_file() else "mkdir -p"
            parent = str(Path(target).parent)
            lines += [
                f'mkdir -p "$R"{q(parent)}',
                f'[ -e "$R"{q(target)} ] || {make} "$R"{q(target)}',
                f'mount --bind {q(str(source))} "$R"{q(target)}',
            ]
            if mount.get("readOnly"):
                lines.append(f'mount -o remount,bind,ro "$R"{q(target)}')
        lines += [
            'mount -o remount,ro "$R"',  # readOnlyRootFilesystem
            f'exec chroot "$R" setpriv --reuid={UID} --regid={UID} --groups={UID} --no-new-privs -- "$@"',
        ]
        return "\n".join(lines) + "\n"

    def _account_file(self, name: str) -> Path:
        entry = {
            "passwd": f"airflow:x:{UID}:{UID}::/opt/bitnami/airflow:/bin/bash",
            "group": f"airflow:x:{UID}:",
        }
        path = self.scratch / name
        path.write_text(Path(f"/etc/{name}").read_text() + entry[name] + "\n")
        path.chmod(0o644)
        return path

    def env_of(self, container: dict[str, Any]) -> dict[str, str]:
        env = {"PATH": IMAGE_PATH, "HOME": "/", "LANG": "C.UTF-8"}
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
            elif "valueFrom" in entry:
                raise NotImplementedError(f"env {entry['name']} from {entry['valueFrom']} is not emulated")
        env.update(self.extra_env)
        return env

    def run(self, timeout: float = 900) -> PodRun:
        self.scratch.mkdir(parents=True, exist_ok=True)
        volumes = self._volumes()
        result = PodRun()
        for index, container in enumerate(self.spec.get("initContainers", [])):
            root = self.scratch / f"root-{index}"
            root.mkdir(exist_ok=True)
            argv = [*container.get("command", []), *container.get("args", [])]
            setup = self._setup_script(container, volumes, root)
            namespaced = ["unshare", "--mount", "--propagation", "private", "bash", "-c", setup, "container"]
            run = run_container(container["name"], [*namespaced, *argv], timeout, env=self.env_of(container))
            result.runs.append(run)
            if run.returncode != 0:
                break
        return result
