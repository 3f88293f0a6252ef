"""The model image repository's rules: which tags move, which images never expire."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr

from trainship.names import CACHE_TAG_PREFIX, LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX

# An image with one of these tags serves a model or is its rollback target.
PINNED_TAG_PREFIXES = (LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX)
# Tags that move (the repository is immutable otherwise): the BuildKit cache BuildImage
# rewrites, and live-<name> / previous-<name>, moved at every promotion.
MUTABLE_TAG_PATTERNS = (f"{CACHE_TAG_PREFIX}*", *(f"{prefix}*" for prefix in PINNED_TAG_PREFIXES))
# ECR lifecycle rules match a tag pattern; "keep 9999" of them keeps them all in practice
# (the rule exists to shield them from the lower-priority count rule).
PINNED_IMAGES_KEPT = 9999
KEPT_IMAGES = 100
# Build caches (one per dependency set): the most recently exported ones are kept.
KEPT_BUILD_CACHES = 20
# An untagged image is a build cache manifest a later export of its tag replaced.
UNTAGGED_KEPT_DAYS = 1
# Room in the last rule for what it may still count besides model versions (see below):
# the caches, and the untagged manifests of the last day (up to 10 cache exports a day keep
# 100 model versions under the stricter reading; a busier day keeps fewer until the
# untagged ones expire)
UNTAGGED_ROOM = 10
LAST_RULE_COUNT = KEPT_IMAGES + KEPT_BUILD_CACHES + UNTAGGED_ROOM


def lifecycle_rules() -> list[ecr.LifecycleRule]:
    """Keep at least the last 100 model images, never one that serves or is a rollback
    target.

    ECR applies rules from the lowest rulePriority up, and "an image that matches the
    tagging requirements of a rule cannot be expired by a rule with a lower priority"
    (Amazon ECR user guide, "How lifecycle policies work"). So a first rule per pin
    prefix that matches every pinned image (and keeps far more than exist) shields
    them from the final count rule. One rule per prefix: a tagPatternList matches
    only images that carry all of its patterns. The tagStatus "any" rule must have
    the highest priority ("Lifecycle policy properties": rulePriority).

    The BuildKit registry cache is an image too (``image-manifest=true``): each export
    of a ``buildcache-<key>`` tag pushes a new manifest and leaves the one it replaced
    untagged. Without rules of their own, those caches and orphans would count toward
    the 100 and crowd out model versions (a build that changes the cache leaves one
    orphan, so only about half of the 100 would be models). So the caches have their
    own count (the 20 most recently exported dependency sets; an expired one costs its
    next build a pip install), and untagged images expire a day after their push
    ("Lifecycle policy properties": sinceImagePushed with countUnit days). Model images
    are always pushed with their version tag, attestations off (trainship/image/docker.py),
    so no untagged image is a model's.

    The guide reads two ways on whether a lower rule still counts what a higher one
    matched: "Rules can never mark images that are marked by higher priority rules, but can
    still identify them as if they haven't been expired" ("How lifecycle policies work";
    its Example A), against "would see no images because all available images were
    already seen by Rule 1" (Example B). If it counts them, the last rule's newest N include
    the caches and the last day's untagged manifests, so N leaves room for them
    (``LAST_RULE_COUNT``): at least 100 model versions either way
    (tests/infra/test_aws_review_images.py plays a year of builds both ways).
    """
    rules: list[dict[str, Any]] = [
        {"tag_status": ecr.TagStatus.TAGGED, "tag_pattern_list": [f"{prefix}*"],
         "max_image_count": PINNED_IMAGES_KEPT,
         "description": f"never expire {prefix}* images (serving or rollback target)"}
        for prefix in PINNED_TAG_PREFIXES]
    rules += [
        {"tag_status": ecr.TagStatus.TAGGED, "tag_pattern_list": [f"{CACHE_TAG_PREFIX}*"],
         "max_image_count": KEPT_BUILD_CACHES,
         "description": f"keep the {KEPT_BUILD_CACHES} most recent build caches"},
        {"tag_status": ecr.TagStatus.UNTAGGED,
         "max_image_age": cdk.Duration.days(UNTAGGED_KEPT_DAYS),
         "description": "expire replaced build cache manifests (untagged) after a day"},
        {"tag_status": ecr.TagStatus.ANY, "max_image_count": LAST_RULE_COUNT,
         "description": f"keep at least the last {KEPT_IMAGES} other model images"}]
    return [ecr.LifecycleRule(rule_priority=priority, **rule)
            for priority, rule in enumerate(rules, start=1)]
