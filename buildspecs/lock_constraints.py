"""Print the constraints a build installs trainship with: requirements.lock less every
package the build's own Python already has.

A constraints file decides which version pip installs, and pip replaces an installed
version that breaks one (pip's user guide, "Constraints Files"). CodeBuild's images come
with packages of their own (boto3 on the standard images; numpy<2, pandas, scikit-learn on
the GPU training images, which their frameworks are built against), and the user's script
is written against them. So the lock pins what the build adds, never what the image has:
an installed package stays as it is when it satisfies trainship's requirements (pip's
default upgrade strategy, only-if-needed), and everything else comes at its locked version.

Standard library only: it runs before trainship is installed.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata


def canonical(name: str) -> str:
    """A distribution name as PEP 503 normalises it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_lines(text: str, installed: set[str]) -> list[str]:
    """The lock's requirement lines whose package is not among ``installed``."""
    kept = []
    for line in text.splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        name = re.split(r"[\s=<>!~;\[]", requirement, maxsplit=1)[0]
        if canonical(name) not in installed:
            kept.append(requirement)
    return kept


def installed_names() -> set[str]:
    return {canonical(dist.metadata["Name"]) for dist in metadata.distributions()
            if dist.metadata["Name"]}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: lock_constraints.py REQUIREMENTS_LOCK", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as lock:
        print("\n".join(lock_lines(lock.read(), installed_names())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
