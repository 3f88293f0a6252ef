"""``python -m trainship.serving --model-dir DIR``: see trainship.serving.cli."""

import sys

from trainship.serving.cli import main

sys.exit(main(sys.argv[1:]))
