"""The inference workers serve with what a bare interpreter's warning filters do."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from typing import Any

from trainship.serving.warnings import runtime_warning_filters

CATEGORIES = (Warning, UserWarning, DeprecationWarning, PendingDeprecationWarning,
              SyntaxWarning, RuntimeWarning, FutureWarning, ImportWarning, UnicodeWarning,
              BytesWarning, ResourceWarning, EncodingWarning)


def action(filters: list[Any], category: type[Warning], module: str) -> str:
    """What the warnings machinery does with ``category`` raised in ``module``: the first
    filter that matches (its category by issubclass, its module pattern), else 'default'."""
    for act, _message, cat, mod, _lineno in filters:
        pattern = getattr(mod, "pattern", mod)
        if issubclass(category, cat) and (pattern is None or re.match(pattern, module)):
            return str(act)
    return "default"


def bare_actions(module: str) -> list[str]:
    code = ("import warnings, sys\nsys.path.insert(0, sys.argv[1])\n"
            "from test_warning_filters import CATEGORIES, action\n"
            "print(' '.join(action(warnings.filters, c, sys.argv[2]) for c in CATEGORIES))")
    return subprocess.run([sys.executable, "-c", code, __file__.rsplit("/", 1)[0], module],
                          capture_output=True, text=True, check=True).stdout.split()


def test_filters_act_as_a_bare_interpreters_in_one_filter() -> None:
    saved = list(warnings.filters)
    try:
        warnings.filterwarnings("ignore", message="numpy.ndarray size changed")
        warnings.simplefilter("always", UserWarning)
        warnings.simplefilter("error", RuntimeWarning)
        runtime_warning_filters()
        ours = list(warnings.filters)
        with warnings.catch_warnings(record=True) as caught:  # the tuple filter works
            runtime_warning_filters()
            warnings.warn("gone", DeprecationWarning, stacklevel=1)
            warnings.warn("shown", UserWarning, stacklevel=1)
    finally:
        warnings.filters[:] = saved
    assert len(ours) == 1  # scikit-learn re-applies each filter for every tree
    for module in ("sklearn.utils.parallel", "numpy", "trainship.serving.service"):
        assert [action(ours, c, module) for c in CATEGORIES] == bare_actions(module)
    assert [str(w.message) for w in caught] == ["shown"]
