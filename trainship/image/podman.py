"""The podman builder: local container mode (Debian's podman/buildah, the base image made
with debootstrap, the registry on 127.0.0.1; trainship.containers)."""

from __future__ import annotations

from pathlib import Path

from trainship import containers
from trainship.errors import ImageBuildFailed
from trainship.image.base import REPOSITORY, STEP, run_builder
from trainship.image.container import ContainerBuilder

LOCAL_REGISTRIES = ("127.0.0.1:", "localhost:")  # plain HTTP: --tls-verify=false


def require_podman() -> None:
    try:
        containers.require_tools()
    except containers.ContainerToolsMissing as exc:
        raise ImageBuildFailed(str(exc), step=STEP,
                               help=f"Install them: apt-get install "
                                    f"{containers.APT_PACKAGES}") from exc


class PodmanBuilder(ContainerBuilder):
    name = "podman"

    def repository(self) -> str:
        """``local``: the local stack's registry (started if need be)."""
        if self.settings.image_repository != "local":
            return self.settings.image_repository
        require_podman()
        return f"{containers.ensure_registry(self.settings.home)}/{REPOSITORY}"

    def environment(self) -> dict[str, str]:
        require_podman()
        return containers.engine_env(self.settings.home)

    def base_image(self) -> str:
        """``debootstrap:<suite>``: the base image made locally (once) with debootstrap."""
        if self.settings.base_image.startswith("debootstrap:"):
            return containers.ensure_base_image(self.settings.home)
        return self.settings.base_image

    def command(self, context: Path, *, reference: str, base_image: str, pip_options: str,
                arch: str) -> list[str]:
        return ["podman", "build", "--platform", f"linux/{arch}", "--format", "docker",
                "--layers", "--pull=false",
                *self.build_args(context, reference=reference, base_image=base_image,
                                 pip_options=pip_options)]

    def pushed_digest(self, context: Path, reference: str, env: dict[str, str] | None) -> str:
        tls = ["--tls-verify=false"] if reference.startswith(LOCAL_REGISTRIES) else []
        digest_file = context / "digest"
        run_builder(["podman", "push", "--quiet", *tls, "--digestfile", str(digest_file),
                     reference], env=env, what="podman push")
        return digest_file.read_text().strip()
