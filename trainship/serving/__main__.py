"""``python -m trainship.serving --model-dir DIR``: see trainship.serving.cli.

The cyclic garbage collector is off while the service starts: what importing MLflow,
pandas and the model's libraries and loading the model create lives as long as the
process, and full collections of it took about a second of the start-up on 2 cores.
``workers.serve`` freezes it all (``gc.freeze``) and turns the collector back on before
serving (Python's ``gc`` documentation's advice for processes that fork workers).
"""

import gc
import sys

gc.disable()

from trainship.serving.cli import main  # noqa: E402 - after the collector is off

sys.exit(main(sys.argv[1:]))
