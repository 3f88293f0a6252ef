"""Issue 10, infra side: the review's findings about images and builds (the model
repository's lifecycle, native builds for the cluster, the build images)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.repository import LAST_RULE_COUNT
from tests.infra.helpers import (
    BUILDKIT_COPY,
    CLUSTER_STATES,
    REPO,
    Synth,
    function_env,
    granted,
    one,
    project_env,
    synth,
)
from trainship.names import LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX

# --- item 7: images that serve never expire -----------------------------------------------

def ecr_expired(policy: dict[str, Any], images: list[dict[str, Any]],
                now: dt.datetime | None = None, *, counts_claimed: bool = False) -> set[str]:
    """Amazon ECR's documented lifecycle evaluation ("How lifecycle policies work",
    "Lifecycle policy properties", "Examples of lifecycle policies"): rules apply from the
    lowest rulePriority; an image matched by a rule's tag selection cannot be expired by a
    lower-priority rule; a tagPatternList (or tagPrefixList) selects images having every
    listed pattern; imageCountMoreThan keeps the newest countNumber of the images a rule
    selects; sinceImagePushed (countUnit days) expires those pushed more than countNumber
    days before ``now`` (by default the last push).

    The guide reads two ways on what a lower rule counts. Its Example B: a rule "would see
    no images because all available images were already seen by Rule 1" (the default
    here). Its Example A and "How lifecycle policies work": rules "can never mark images
    that are marked by higher priority rules, but can still identify them as if they
    haven't been expired" (``counts_claimed``: a count rule ranks the images higher rules
    matched too, and expires only the others)."""
    claimed: set[str] = set()
    expired: set[str] = set()
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        sel = rule["selection"]

        def selects(image: dict[str, Any], sel: dict[str, Any] = sel) -> bool:
            tags = image["tags"]
            if sel["tagStatus"] == "untagged":
                return not tags
            if sel["tagStatus"] == "any":
                return True
            patterns = sel.get("tagPatternList") or [p + "*" for p in sel["tagPrefixList"]]
            return all(any(fnmatch.fnmatchcase(t, p) for t in tags) for p in patterns)

        seen = [i for i in images if (counts_claimed or i["digest"] not in claimed)
                and selects(i)]
        if sel["countType"] == "sinceImagePushed":
            assert sel["countUnit"] == "days"
            latest = max((i["pushed"] for i in images), default=dt.datetime.now())
            limit = (now or latest) - dt.timedelta(days=sel["countNumber"])
            marked = {i["digest"] for i in seen if i["pushed"] < limit}
        else:
            assert sel["countType"] == "imageCountMoreThan"
            newest = sorted(seen, key=lambda i: i["pushed"], reverse=True)
            marked = {i["digest"] for i in newest[sel["countNumber"]:]}
        expired |= marked - claimed
        claimed |= {i["digest"] for i in seen}
    return expired


def lifecycle(template: dict[str, Any]) -> dict[str, Any]:
    _, repo = one(template, "AWS::ECR::Repository", "Models")
    policy: dict[str, Any] = json.loads(repo["LifecyclePolicy"]["LifecyclePolicyText"])
    return policy


def test_serving_and_rollback_images_never_expire(synthesized: Synth) -> None:
    _, template, _ = synthesized
    start = dt.datetime(2026, 1, 1)
    # a long-lived model deployed first, then 150 images of busier models
    images = [{"digest": "sha256:churn-v1", "pushed": start,
               "tags": ["churn-v1", f"{PREVIOUS_TAG_PREFIX}churn"]},
              {"digest": "sha256:churn-v2", "pushed": start + dt.timedelta(hours=1),
               "tags": ["churn-v2", f"{LIVE_TAG_PREFIX}churn"]}]
    images += [{"digest": f"sha256:busy-{n}", "pushed": start + dt.timedelta(days=1, hours=n),
                "tags": [f"busy-v{n}"]} for n in range(150)]
    expired = ecr_expired(lifecycle(template), images)
    assert "sha256:churn-v1" not in expired and "sha256:churn-v2" not in expired
    # the other images: the newest LAST_RULE_COUNT kept (at least 100 model versions)
    assert len(expired) == 150 - LAST_RULE_COUNT
    old = {"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100},
        "action": {"type": "expire"}}]}
    assert {"sha256:churn-v1", "sha256:churn-v2"} <= ecr_expired(old, images)


def a_year_of_builds(policy: dict[str, Any], *, counts_claimed: bool) -> list[dict[str, Any]]:
    """What the repository holds after 300 days with one image build a day, ECR applying
    ``policy`` at the end of each day: each build pushes a model version (40 models) and
    exports its dependency set's ``buildcache-<key>`` tag again (30 sets: a new manifest,
    ``image-manifest=true``), which leaves the manifest it replaced untagged."""
    start = dt.datetime(2026, 1, 1)
    images: list[dict[str, Any]] = []
    for day in range(300):
        pushed = start + dt.timedelta(days=day, hours=9)
        key = f"buildcache-{day % 30:016x}"
        for image in images:
            if key in image["tags"]:
                image["tags"] = []  # the replaced cache manifest: untagged
        images += [{"digest": f"sha256:model-{day}", "pushed": pushed,
                    "tags": [f"model{day % 40}-v{day}"]},
                   {"digest": f"sha256:cache-{day}", "pushed": pushed, "tags": [key]}]
        gone = ecr_expired(policy, images, start + dt.timedelta(days=day, hours=23),
                           counts_claimed=counts_claimed)
        images = [i for i in images if i["digest"] not in gone]
    return images


@pytest.mark.parametrize("counts_claimed", [False, True])
def test_build_caches_and_their_orphans_do_not_crowd_out_model_images(
        synthesized: Synth, counts_claimed: bool) -> None:
    """The model versions keep at least their 100 places, whichever way the guide's
    evaluation is read (``ecr_expired``); caches keep the 20 most recent dependency sets;
    replaced cache manifests (untagged) are gone a day after their push. Under the previous
    policy (pins, then "any" keeps 100) the caches and orphans took places of the 100."""
    _, template, _ = synthesized
    policy = lifecycle(template)
    kept = a_year_of_builds(policy, counts_claimed=counts_claimed)
    models = sorted(int(i["digest"].rsplit("-", 1)[1]) for i in kept
                    if i["digest"].startswith("sha256:model-"))
    assert len(models) >= 100 and models[-100:] == list(range(200, 300))
    caches = [i for i in kept if i["tags"] and i["tags"][0].startswith("buildcache-")]
    assert len(caches) == 20 and all(not i["digest"].startswith("sha256:model-")
                                     for i in caches)
    assert [i["digest"] for i in kept if not i["tags"]] == []
    old = {"rules": [r for r in policy["rules"] if r["selection"]["tagStatus"] == "any"
                     or r["selection"].get("tagPatternList", [""])[0] in
                     (f"{LIVE_TAG_PREFIX}*", f"{PREVIOUS_TAG_PREFIX}*")]}
    old["rules"][-1]["selection"]["countNumber"] = 100
    before = a_year_of_builds(old, counts_claimed=counts_claimed)
    assert len([i for i in before if i["digest"].startswith("sha256:model-")]) <= 50


def test_pins_are_mutable_tags_the_cluster_role_may_move(synthesized: Synth) -> None:
    _, template, _ = synthesized
    repo_id, repo = one(template, "AWS::ECR::Repository", "Models")
    filters = {f["ImageTagMutabilityExclusionFilterValue"]
               for f in repo["ImageTagMutabilityExclusionFilters"]}
    assert {f"{LIVE_TAG_PREFIX}*", f"{PREVIOUS_TAG_PREFIX}*", "buildcache-*"} == filters
    rules = lifecycle(template)["rules"]
    assert rules[-1]["selection"]["tagStatus"] == "any"  # "any" must come last
    assert rules[-1]["rulePriority"] == max(r["rulePriority"] for r in rules)
    role_id, _ = one(template, "AWS::IAM::Role", "ClusterRole")
    grants = granted(template, role_id)
    for action in ("ecr:BatchGetImage", "ecr:PutImage", "ecr:DescribeImages"):
        assert grants[action] == [{"Fn::GetAtt": [repo_id, "Arn"]}], action
    for step in CLUSTER_STATES:
        assert "TRAINSHIP_IMAGE_REPOSITORY" in function_env(template, step)


# --- item 13: the cluster's architecture ----------------------------------------------------

def test_images_are_built_natively_for_the_cluster(synthesized: Synth,
                                                   variant: Synth) -> None:
    _, default, _ = synthesized
    _, arm, _ = variant
    _, x86 = one(default, "AWS::CodeBuild::Project", "Image")
    assert x86["Environment"]["Type"] == "LINUX_CONTAINER"
    assert project_env(default, "Image")["TRAINSHIP_CLUSTER_ARCH"] == "amd64"
    _, aarch64 = one(arm, "AWS::CodeBuild::Project", "Image")
    assert aarch64["Environment"]["Type"] == "ARM_CONTAINER"
    assert "aarch64" in aarch64["Environment"]["Image"]
    assert aarch64["Environment"]["PrivilegedMode"] is True
    assert project_env(arm, "Image")["TRAINSHIP_CLUSTER_ARCH"] == "arm64"
    for step in CLUSTER_STATES:
        assert function_env(default, step)["TRAINSHIP_CLUSTER_ARCH"] == "amd64"
        assert function_env(arm, step)["TRAINSHIP_CLUSTER_ARCH"] == "arm64"


# --- item 15: the Deep Learning Containers account ------------------------------------------

def test_deep_learning_container_account_comes_from_region_info(tmp_path: Path,
                                                                variant: Synth) -> None:
    _, gpu, _ = synth(tmp_path, trainCompute="gpu")
    _, train = one(gpu, "AWS::CodeBuild::Project", "Train")
    # "Local caching": the LINUX_GPU_CONTAINER environment type does not support it
    assert train.get("Cache", {"Type": "NO_CACHE"}) == {"Type": "NO_CACHE"}
    image = json.dumps(train["Environment"]["Image"])
    assert "Fn::FindInMap" in image  # the account of the region the stack lands in
    mapping = next(iter(gpu["Mappings"].values()))
    assert {"us-east-1", "eu-central-2", "ap-east-1", "cn-north-1"} <= set(mapping)
    assert len({v["value"] for v in mapping.values()}) > 1  # not one account for all
    _, pinned = one(variant[1], "AWS::CodeBuild::Project", "Train")
    assert "123456789012.dkr.ecr" in json.dumps(pinned["Environment"]["Image"])
    sources = "".join(p.read_text() for p in (REPO / "infra").rglob("*.py"))
    assert "763104351884" not in sources


def test_buildkit_image_can_be_a_copy(synthesized: Synth, variant: Synth) -> None:
    """A VPC without internet (or Docker Hub's anonymous pull limits) needs BuildKit from
    elsewhere: the context key reaches the image project, and is absent by default."""
    assert "TRAINSHIP_BUILDKIT_IMAGE" not in project_env(synthesized[1], "Image")
    assert project_env(variant[1], "Image")["TRAINSHIP_BUILDKIT_IMAGE"] == BUILDKIT_COPY


def test_both_builds_keep_pip_cache_on_their_host(synthesized: Synth,
                                                  variant: Synth) -> None:
    """CodeBuild's local custom cache keeps the paths a buildspec's ``cache`` section lists
    ("Local caching": LOCAL_CUSTOM_CACHE), for later builds on the same host: both projects
    set it, and both buildspecs list pip's cache. The same page: "Local caching is not
    supported when you configure CodeBuild to work with a VPC": a stack in a VPC has none."""
    for project, buildspec in (("Train", "train.yml"), ("Image", "image.yml")):
        _, resource = one(synthesized[1], "AWS::CodeBuild::Project", project)
        assert resource["Cache"] == {"Type": "LOCAL", "Modes": ["LOCAL_CUSTOM_CACHE"]}
        spec = yaml.safe_load((REPO / "buildspecs" / buildspec).read_text())
        assert "/root/.cache/pip/**/*" in spec["cache"]["paths"]
        _, in_vpc = one(variant[1], "AWS::CodeBuild::Project", project)
        assert in_vpc.get("Cache", {"Type": "NO_CACHE"}) == {"Type": "NO_CACHE"}
