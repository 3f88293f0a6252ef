"""The warning filters workers serve with."""

from __future__ import annotations

import warnings

# what a bare interpreter ignores (its default filters, less the one that shows
# DeprecationWarning raised in __main__, which in a worker is trainship's own entry point)
IGNORED = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def runtime_warning_filters() -> None:
    """Serve with what a bare interpreter's warning filters do, as one filter, instead of
    the ones libraries add while they are imported (numpy ABI notices, scipy, urllib3: about
    ten). scikit-learn (1.6+) re-applies every filter for every tree of an ensemble at every
    predict, so each filter costs about 10 us per tree: a third of a 100-tree forest's
    predict time with the libraries' filters, and about 8% with a bare interpreter's five
    (one ``ignore`` filter per category) instead of this one (a tuple of categories, which
    the warnings machinery matches with ``issubclass`` as it does one class). Only which
    warnings get printed changes; ``--keep-warning-filters`` keeps them all."""
    warnings.resetwarnings()
    warnings.simplefilter("ignore", IGNORED)
