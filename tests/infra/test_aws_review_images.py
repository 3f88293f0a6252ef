"""Issue 10, infra side: the review's findings about images and builds (the model
repository's lifecycle, native builds for the cluster, the build images)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from pathlib import Path
from typing import Any

import yaml

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
from trainship.image_pins import LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX

# --- item 7: images that serve never expire -----------------------------------------------

def ecr_expired(policy: dict[str, Any], images: list[dict[str, Any]],
                now: dt.datetime | None = None) -> set[str]:
    """Amazon ECR's documented lifecycle evaluation ("How lifecycle policies work",
    "Lifecycle policy properties"): rules apply from the lowest rulePriority; an image
    matched by a rule's tag selection cannot be expired by a lower-priority rule; a
    tagPatternList (or tagPrefixList) selects images having every listed pattern;
    imageCountMoreThan keeps the newest countNumber of the images a rule selects;
    sinceImagePushed (countUnit days) expires those pushed more than countNumber days
    before ``now`` (by default the last push)."""
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

        matched = [i for i in images if i["digest"] not in claimed and selects(i)]
        if sel["countType"] == "sinceImagePushed":
            assert sel["countUnit"] == "days"
            latest = max((i["pushed"] for i in images), default=dt.datetime.now())
            limit = (now or latest) - dt.timedelta(days=sel["countNumber"])
            expired |= {i["digest"] for i in matched if i["pushed"] < limit}
        else:
            assert sel["countType"] == "imageCountMoreThan"
            newest = sorted(matched, key=lambda i: i["pushed"], reverse=True)
            expired |= {i["digest"] for i in newest[sel["countNumber"]:]}
        claimed |= {i["digest"] for i in matched}
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
    assert len(expired) == 50  # the other images still keep the repository at 100
    old = {"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100},
        "action": {"type": "expire"}}]}
    assert {"sha256:churn-v1", "sha256:churn-v2"} <= ecr_expired(old, images)


def test_build_caches_and_their_orphans_do_not_crowd_out_model_images(
        synthesized: Synth) -> None:
    """Each image build exports its dependency set's ``buildcache-<key>`` tag again (a new
    manifest: ``image-manifest=true``), and the manifest it replaced stays, untagged. A
    year of builds: 40 dependency sets, 300 model versions, one orphan per build. The
    model versions keep their 100 places; caches keep the 20 most recent sets; orphans go
    a day after their push. Under the previous policy (pins, then "any" keeps 100) the
    orphans and caches took most of the 100 places."""
    _, template, _ = synthesized
    start = dt.datetime(2026, 1, 1)
    images: list[dict[str, Any]] = []
    for n in range(300):
        pushed = start + dt.timedelta(days=n)
        images.append({"digest": f"sha256:model-{n}", "pushed": pushed,
                       "tags": [f"model{n % 40}-v{n}"]})
        images.append({"digest": f"sha256:orphan-{n}", "pushed": pushed, "tags": []})
    images += [{"digest": f"sha256:cache-{k}", "pushed": start + dt.timedelta(days=260 + k),
                "tags": [f"buildcache-{k:016x}"]} for k in range(40)]
    now = start + dt.timedelta(days=300, hours=1)
    images.append({"digest": "sha256:orphan-today", "pushed": now - dt.timedelta(hours=2),
                   "tags": []})
    kept = {i["digest"] for i in images} - ecr_expired(lifecycle(template), images, now)
    assert {f"sha256:model-{n}" for n in range(200, 300)} <= kept
    assert len([d for d in kept if d.startswith("sha256:model-")]) == 100
    assert {d for d in kept if d.startswith("sha256:cache-")} == {
        f"sha256:cache-{k}" for k in range(20, 40)}
    assert {d for d in kept if "orphan" in d} == {"sha256:orphan-today"}
    rules = lifecycle(template)["rules"]
    old = {"rules": [r for r in rules if r["selection"]["tagStatus"] == "any"
                     or ("tagPatternList" in r["selection"]
                     and not r["selection"]["tagPatternList"][0].startswith("buildcache"))]}
    kept_before = {i["digest"] for i in images} - ecr_expired(old, images, now)
    assert len([d for d in kept_before if d.startswith("sha256:model-")]) < 50


def test_pins_are_mutable_tags_the_cluster_role_may_move(synthesized: Synth) -> None:
    _, template, _ = synthesized
    repo_id, repo = one(template, "AWS::ECR::Repository", "Models")
    filters = {f["ImageTagMutabilityExclusionFilterValue"]
               for f in repo["ImageTagMutabilityExclusionFilters"]}
    assert {f"{LIVE_TAG_PREFIX}*", f"{PREVIOUS_TAG_PREFIX}*", "buildcache*"} == filters
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
