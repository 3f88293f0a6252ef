"""``python -m trainship.image build`` (buildspecs/image.yml, the local stack)."""

import sys

from trainship.image import main

sys.exit(main(sys.argv[1:]))
