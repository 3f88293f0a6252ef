"""Image tags that keep a model's serving and rollback images from expiring.

At promotion the serving image is tagged ``live-<serving name>`` and the image it
replaced ``previous-<serving name>``; the ECR lifecycle policy (infra) never expires an
image carrying either prefix.
"""

from __future__ import annotations

LIVE_TAG_PREFIX = "live-"
PREVIOUS_TAG_PREFIX = "previous-"
