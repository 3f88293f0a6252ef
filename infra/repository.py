"""The model image repository's rules: which tags move, which images never expire."""

from __future__ import annotations

from aws_cdk import aws_ecr as ecr

from trainship.image_pins import LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX

# An image with one of these tags serves a model or is its rollback target.
PINNED_TAG_PREFIXES = (LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX)
# Tags that move (the repository is immutable otherwise): the BuildKit cache BuildImage
# rewrites, and live-<name> / previous-<name>, moved at every promotion.
MUTABLE_TAG_PATTERNS = ("buildcache*", *(f"{prefix}*" for prefix in PINNED_TAG_PREFIXES))
# ECR lifecycle rules match a tag pattern; "keep 9999" of them keeps them all in practice
# (the rule exists to shield them from the lower-priority count rule).
PINNED_IMAGES_KEPT = 9999
KEPT_IMAGES = 100


def lifecycle_rules() -> list[ecr.LifecycleRule]:
    """Keep the last 100 images, never one that serves or is a rollback target.

    ECR applies rules from the lowest rulePriority up, and "an image that matches the
    tagging requirements of a rule cannot be expired by a rule with a lower priority"
    (Amazon ECR user guide, "How lifecycle policies work"). So a first rule per pin
    prefix that matches every pinned image (and keeps far more than exist) shields
    them from the final count rule. One rule per prefix: a tagPatternList matches
    only images that carry all of its patterns. The tagStatus "any" rule must have
    the highest priority ("Lifecycle policy properties": rulePriority).
    """
    pinned = [ecr.LifecycleRule(
        rule_priority=priority, tag_status=ecr.TagStatus.TAGGED,
        tag_pattern_list=[f"{prefix}*"], max_image_count=PINNED_IMAGES_KEPT,
        description=f"never expire {prefix}* images (serving or rollback target)")
        for priority, prefix in enumerate(PINNED_TAG_PREFIXES, start=1)]
    return [*pinned, ecr.LifecycleRule(
        rule_priority=len(pinned) + 1, tag_status=ecr.TagStatus.ANY,
        max_image_count=KEPT_IMAGES,
        description=f"keep the last {KEPT_IMAGES} other model images")]
