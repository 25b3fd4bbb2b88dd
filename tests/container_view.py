"""Run a command as the compose file's container would: its mounts, secrets, env, user, cwd.

No container engine runs on the test machines, so the container's *view* is rebuilt with a
private mount namespace (``unshare -m``, needs root): the compose service's bind mounts
(read-only where the file says ``:ro``), its secrets under ``/run/secrets``, its tmpfs, a
read-only root when it says ``read_only: true``, the Dockerfile's ``WORKDIR``, ``ENV`` and
``USER``, and nothing of the test's environment. A path the program writes outside a
writable mount fails with EROFS, exactly as in the container.

Two empty mount points are created on the host when missing (``/data`` and
``/etc/offline-ingestor``) and left there: removing a directory that is a mount point in a
concurrently running namespace would detach that mount.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers import ROOT

__all__ = ["ContainerView", "Dockerfile", "can_build_views", "compose_service", "dockerfile"]

_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` interpolation."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


@dataclass
class Dockerfile:
    """What the final stage of the Dockerfile sets for the running container."""

    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = "0"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def dockerfile(path: Path = ROOT / "Dockerfile") -> Dockerfile:
    """Parse the final stage (ENV, WORKDIR, USER, ENTRYPOINT, CMD; exec-form only)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    result = Dockerfile()
    for line in final:
        instruction, _, rest = line.partition(" ")
        if instruction == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                result.env[key] = value
        elif instruction == "WORKDIR":
            result.workdir = rest.strip()
        elif instruction == "USER":
            result.user = rest.strip()
        elif instruction == "ENTRYPOINT":
            result.entrypoint = yaml.safe_load(rest)
        elif instruction == "CMD":
            result.cmd = yaml.safe_load(rest)
    return result


def compose_service(
    name: str, path: Path = ROOT / "docker-compose.yml"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service's definition and the whole file."""
    compose = yaml.safe_load(path.read_text())
    return compose["services"][name], compose


def can_build_views() -> str | None:
    """Why container views cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root for a private mount namespace (CI runs as root)"
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@dataclass
class ContainerView:
    """One compose service's container view, with host-side sources chosen by the test."""

    service: dict[str, Any]
    compose: dict[str, Any]
    image: Dockerfile
    #: The environment compose interpolates from (e.g. DATA_ROOT).
    shell_env: dict[str, str]
    #: Host file for each compose secret name (the test's copy of the secret).
    secret_files: dict[str, Path]
    #: Host directory standing in for each tmpfs (so the test can see the heartbeat file).
    tmpfs_dirs: dict[str, Path]
    #: Host path for a mount source, when the test substitutes one (e.g. an edited config).
    source_overrides: dict[str, Path] = field(default_factory=dict)
    #: Environment values replaced as the container's network would resolve them.
    env_overrides: dict[str, str] = field(default_factory=dict)

    def mounts(self) -> list[tuple[Path, str, bool]]:
        """(host source, container target, read-only) of every bind mount and volume."""
        found = []
        for volume in self.service.get("volumes", []):
            parts = interpolate(volume, self.shell_env).split(":")
            source, target, mode = parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"
            if source in self.source_overrides:
                host = self.source_overrides[source]
            elif source.startswith("."):
                host = ROOT / source
            elif source.startswith("/"):
                host = Path(source)
            else:  # a named volume: empty and writable at first
                host = self.tmpfs_dirs["/tmp"].parent / "volumes" / source
                host.mkdir(parents=True, exist_ok=True)
                host.chmod(0o1777)
            found.append((host, target, mode == "ro"))
        return found

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.image.workdir,
        }
        env.update(self.image.env)
        declared = self.service.get("environment", {})
        if isinstance(declared, list):
            declared = dict(item.partition("=")[::2] for item in declared if "=" in item)
        env.update({key: interpolate(str(value), self.shell_env) for key, value in declared.items()})
        env.update(self.env_overrides)
        return env

    def argv(self, args: list[str] | None = None) -> list[str]:
        """``unshare`` command line running ENTRYPOINT + (args or compose command or CMD)."""
        command = args if args is not None else self.service.get("command", self.image.cmd)
        script = ["set -e", "mount --make-rprivate /"]
        for mount_point in ("/data", "/etc/offline-ingestor"):
            Path(mount_point).mkdir(parents=True, exist_ok=True)
        # The image's layers: its folders exist, owned as the Dockerfile made them.
        uid, _, gid = self.image.user.partition(":")
        script += [
            "mount -t tmpfs -o mode=755 tmpfs /etc/offline-ingestor",
            "mkdir -p /etc/offline-ingestor/schemas && touch /etc/offline-ingestor/config.yml",
            "mount -t tmpfs -o mode=755 tmpfs /var/lib",
            f"mkdir -p {self.image.workdir} && chown {uid}:{gid or uid} {self.image.workdir}",
            "mount -t tmpfs -o mode=755 tmpfs /run && mkdir /run/secrets",
        ]
        # The interpreter lives under /root (mode 700 here); the image has it world-readable.
        python_home = Path(os.path.realpath(sys.executable)).parents[2]
        if str(python_home).startswith("/root/"):
            staging = self.tmpfs_dirs["/tmp"].parent / "python-home"
            staging.mkdir(exist_ok=True)
            script += [
                f"mount --bind {python_home} {staging}",
                "mount -t tmpfs -o mode=755 tmpfs /root",
                f"mkdir -p {python_home} && mount --bind {staging} {python_home}",
            ]
        for host, target, read_only in self.mounts():
            make = (
                f"mkdir -p {target}" if host.is_dir() else f"mkdir -p {Path(target).parent} && touch {target}"
            )
            script += [make, f"mount --bind {host} {target}"]
            if read_only:
                script.append(f"mount -o remount,bind,ro {target}")
        for name in self.service.get("secrets", []):
            target = f"/run/secrets/{name}"
            script += [f"touch {target}", f"mount --bind {self.secret_files[name]} {target}"]
            script.append(f"mount -o remount,bind,ro {target}")
        for target in self.service.get("tmpfs", []):
            script.append(f"mount --bind {self.tmpfs_dirs[target]} {target}")
        if self.service.get("read_only"):
            script += [
                "mount -o remount,bind,ro /",
                "mount -o remount,ro /etc/offline-ingestor",
                "mount -o remount,ro /var/lib",
                "mount -o remount,ro /run",
            ]
        env = " ".join(shlex.quote(f"{key}={value}") for key, value in self.environment().items())
        run = " ".join(shlex.quote(part) for part in [*self.image.entrypoint, *command])
        script += [
            f"cd {self.image.workdir}",
            f"exec setpriv --reuid={uid} --regid={gid or uid} --clear-groups env -i {env} {run}",
        ]
        return ["unshare", "--mount", "--propagation", "private", "bash", "-c", "\n".join(script)]
