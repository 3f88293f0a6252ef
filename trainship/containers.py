"""Containers without a Docker engine: podman/buildah from Debian, a base image made
once with debootstrap, and a real OCI registry (Debian's docker-registry) on 127.0.0.1.

Everything here is local container mode's stand-in for what AWS provides (ECR, a base
image from ECR Public); the image build itself is the same Dockerfile either way.

- ``engine_env(home)``: the environment every podman call gets. Podman here needs a
  containers.conf with runc (crun fails on this cgroup setup), cgroupfs, a file events
  logger and explicit ulimits (runc fails on the default rlimits).
- ``ensure_base_image(home)``: ``localhost/trainship-base:bookworm`` from
  ``debootstrap --variant=minbase`` (Debian's Python 3.11 and venv), made once and kept
  in podman's store; a lock makes concurrent builds wait for the first.
- ``ensure_registry(home)``: docker-registry serving ``<home>/containers/registry`` on a
  port of 127.0.0.1 kept across restarts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from trainship.procs import file_lock, free_port, pid_alive, stop_pid

BASE_IMAGE = "localhost/trainship-base:bookworm"
SUITE = "bookworm"
TOOLS = ("podman", "buildah", "docker-registry", "debootstrap", "catatonit")
APT_PACKAGES = "podman buildah docker-registry debootstrap catatonit runc skopeo"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: trainship-local
"""


class ContainerToolsMissing(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise ContainerToolsMissing(
            f"container mode needs {', '.join(missing)}: "
            f"apt-get install {APT_PACKAGES}")


def containers_dir(home: Path) -> Path:
    path = home / "containers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def engine_env(home: Path) -> dict[str, str]:
    conf = containers_dir(home) / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(home: Path, *args: str, check: bool = True,
           timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=engine_env(home), capture_output=True,
                          text=True, check=check, timeout=timeout)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap needs one)."""
    sources = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]
    for source in sources:
        if not source.exists():
            continue
        for line in source.read_text().splitlines():
            line = line.strip()
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
            if line.startswith("deb ") and "security" not in line:
                return next(p for p in line.split()[1:] if "://" in p)
    return os.environ.get("TRAINSHIP_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def ensure_base_image(home: Path) -> str:
    require_tools()
    with file_lock(containers_dir(home) / "base.lock"):
        if podman(home, "image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        with tempfile.TemporaryDirectory(prefix="trainship-rootfs-",
                                         dir=containers_dir(home)) as tmp:
            rootfs = Path(tmp) / "rootfs"
            subprocess.run(["debootstrap", "--variant=minbase",
                            "--include=python3,python3-venv,ca-certificates", SUITE,
                            str(rootfs), debian_mirror()],
                           check=True, capture_output=True, timeout=1200)
            for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for item in (rootfs / cache).glob("*"):
                    if item.is_file():
                        item.unlink()
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."],
                                   stdout=subprocess.PIPE)
            subprocess.run(["podman", "import", "--change", 'CMD ["python3"]', "-",
                            BASE_IMAGE], stdin=tar.stdout, env=engine_env(home),
                           check=True, capture_output=True, timeout=600)
            tar.wait()
    return BASE_IMAGE


def _registry_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def ensure_registry(home: Path) -> str:
    """Start the local registry unless it answers; return ``127.0.0.1:<port>``."""
    require_tools()
    root = containers_dir(home)
    record_path = root / "registry.json"
    with file_lock(root / "registry.lock"):
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        port = int(record.get("port") or free_port())
        if record.get("pid") and pid_alive(int(record["pid"])) and _registry_answers(port):
            return f"127.0.0.1:{port}"
        config = root / "registry.yml"
        config.write_text(REGISTRY_CONFIG.format(root=root / "registry", port=port))
        proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                stdout=open(root / "registry.log", "ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        record_path.write_text(json.dumps({"pid": proc.pid, "port": port}))
        deadline = time.monotonic() + 30
        while not _registry_answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start; see {root / 'registry.log'}")
            time.sleep(0.2)
    return f"127.0.0.1:{port}"


def stop_registry(home: Path) -> None:
    record_path = home / "containers" / "registry.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record.get("pid") and pid_alive(int(record["pid"])):
            stop_pid(int(record["pid"]))
