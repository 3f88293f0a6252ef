"""The warning filters workers serve with."""

from __future__ import annotations

import warnings


def runtime_warning_filters() -> None:
    """Serve with Python's default warning filters instead of the ones libraries add while
    they are imported (numpy ABI notices, scipy, urllib3: about ten). scikit-learn (1.6+)
    re-applies every filter for every tree of an ensemble at every predict, so each filter
    costs about 10 us per tree: a third of a 100-tree forest's predict time. Only which
    warnings get printed changes; ``--keep-warning-filters`` keeps them all."""
    warnings.resetwarnings()  # then Python's own defaults, as a bare interpreter has them
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                     ResourceWarning):
        warnings.simplefilter("ignore", category, append=True)
