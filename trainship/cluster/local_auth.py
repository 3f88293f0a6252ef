"""The local drivers' auth files (process, podman): ``<root>/.auth/<serving name>/auth``
under the driver's records (``<home>/serving``, ``<home>/podman``). A serving name never
starts with a dot (a DNS-1123 label, trainship.names), so ``.auth`` is never a model's
directory.

Each model's file sits alone in its own directory and is replaced by a rename within it,
so a reader sees the old text or the new, never half of one. Podman bind-mounts the
DIRECTORY read-only into the pod: a bind mount of the file itself pins the inode it was
mounted with, and a rename leaves the container reading the old file for ever.

``update`` (every change the pipeline makes: DeployModel, PromoteModel, RecordFailure,
RotateToken) reads, changes and writes under ``<root>/.auth/<serving name>.lock`` (beside
the directory, not in it: the directory is what podman mounts), so two deployments of one
model on the same machine do not lose each other's entries.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from trainship.names import serving_name
from trainship.procs import file_lock

FILE_NAME = "auth"


def auth_dir(root: Path, model_name: str) -> Path:
    """The directory that holds the model's auth file (what podman mounts)."""
    return root / ".auth" / serving_name(model_name)


def auth_path(root: Path, model_name: str) -> Path:
    return auth_dir(root, model_name) / FILE_NAME


def read(root: Path, model_name: str) -> str | None:
    try:
        return auth_path(root, model_name).read_text()
    except FileNotFoundError:
        return None


def write(root: Path, model_name: str, text: str) -> Path:
    """Replace the model's auth file atomically; its path."""
    directory = auth_dir(root, model_name)
    directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".auth-")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        # readable by the container's user too (podman runs the image's non-root user);
        # it holds digests only, never a token
        os.chmod(temporary, 0o644)
        os.replace(temporary, directory / FILE_NAME)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return directory / FILE_NAME


def update(root: Path, model_name: str,
           change: Callable[[str | None], str | None]) -> str | None:
    """ClusterDriver.update_auth: read, ``change``, write, under the model's auth lock."""
    with file_lock(root / ".auth" / f"{serving_name(model_name)}.lock"):
        text = read(root, model_name)
        new = change(text)
        if new is None or new == text:
            return text
        write(root, model_name, new)
        return new


def remove(root: Path, model_name: str) -> bool:
    """Delete the model's auth file and its directory: whether there was one."""
    directory = auth_dir(root, model_name)
    existed = (directory / FILE_NAME).exists()
    shutil.rmtree(directory, ignore_errors=True)
    return existed


class LocalAuthFiles:
    """The auth methods of a local driver (ClusterDriver's read_auth, write_auth,
    update_auth) on the files under its ``root``."""

    root: Path

    def read_auth(self, model_name: str) -> str | None:
        return read(self.root, model_name)

    def write_auth(self, model_name: str, text: str) -> None:
        write(self.root, model_name, text)

    def update_auth(self, model_name: str,
                    change: Callable[[str | None], str | None]) -> str | None:
        return update(self.root, model_name, change)
