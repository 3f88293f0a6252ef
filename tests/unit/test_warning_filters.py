"""The inference workers serve with a bare interpreter's warning filters."""

from __future__ import annotations

import subprocess
import sys
import warnings

from trainship.serving.warnings import runtime_warning_filters


def _shape(filters: list[tuple[object, ...]]) -> list[tuple[str, str, str]]:
    def module(value: object) -> str:
        pattern = getattr(value, "pattern", value)
        return str(pattern or "").removesuffix("\\Z")

    return [(str(f[0]), getattr(f[2], "__name__", ""), module(f[3])) for f in filters]


def test_filters_are_a_bare_interpreters() -> None:
    bare = subprocess.run([sys.executable, "-c", "import warnings\nfor f in warnings.filters:"
                           " print(f[0], f[2].__name__, getattr(f[3], 'pattern', f[3]) or '')"],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    saved = list(warnings.filters)
    try:
        warnings.filterwarnings("ignore", message="numpy.ndarray size changed")
        warnings.simplefilter("always", UserWarning)
        runtime_warning_filters()
        ours = [" ".join(item).rstrip() for item in _shape(list(warnings.filters))]
    finally:
        warnings.filters[:] = saved
    assert ours == [line.rstrip() for line in bare if line]
