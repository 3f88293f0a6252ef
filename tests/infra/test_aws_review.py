"""Issue 10, infra side: what a review against AWS's documentation found, as template
assertions (each would fail on the stack as it was)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import synth
from trainship.image_pins import LIVE_TAG_PREFIX, PREVIOUS_TAG_PREFIX
from trainship.script_access import MLFLOW_SCRIPT_ACTIONS, role_policy

REPO = Path(__file__).resolve().parents[2]
Synth = tuple[Any, dict[str, Any], Path]
CLUSTER_STEPS = ("DeployModel", "CheckRollout", "SmokeTestModel", "PromoteModel",
                 "RecordFailure")
ARTIFACTS = "team-mlflow-artifacts"
ARTIFACT_KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TRACKING_ARN = "arn:aws:sagemaker:eu-west-1:111122223333:mlflow-tracking-server/team"


BUILDKIT_COPY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/buildkit:v0.17.3"


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """An existing tracking server in a VPC, arm64 nodes, an internal load balancer."""
    return synth(tmp_path_factory.mktemp("variant"), mlflowTrackingUri=TRACKING_ARN,
                 mlflowArtifactBucket=ARTIFACTS, mlflowArtifactKmsKeyArn=ARTIFACT_KEY,
                 vpcId="vpc-0123456789abcdef0", vpcSubnetIds=["subnet-0123456789abcdef0"],
                 vpcSecurityGroupIds=["sg-0123456789abcdef0"], clusterArchitecture="arm64",
                 loadBalancerScheme="internal",
                 loadBalancerSourceRanges=["10.0.0.0/8", "192.168.1.0/24"],
                 apiReservedConcurrency=5, trainCompute="gpu",
                 deepLearningContainersAccount="123456789012",
                 buildkitImage=BUILDKIT_COPY)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def one(template: dict[str, Any], kind: str, prefix: str) -> tuple[str, dict[str, Any]]:
    found = [(k, v["Properties"]) for k, v in resources(template, kind).items()
             if k.startswith(prefix)]
    assert len(found) == 1, (kind, prefix, found)
    return found[0]


def statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(template: dict[str, Any], role_id: str) -> dict[str, list[Any]]:
    """action -> the resources it is allowed on."""
    out: dict[str, list[Any]] = {}
    for st in statements(template, role_id):
        for action in as_list(st["Action"]):
            out.setdefault(action, []).extend(as_list(st["Resource"]))
    return out


def function_env(template: dict[str, Any], step: str) -> dict[str, Any]:
    _, props = one(template, "AWS::Lambda::Function", f"{step}Function")
    env: dict[str, Any] = props["Environment"]["Variables"]
    return env


def project_env(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    _, props = one(template, "AWS::CodeBuild::Project", prefix)
    return {v["Name"]: v["Value"] for v in props["Environment"]["EnvironmentVariables"]}


# --- item 1: the script's own role -------------------------------------------------------

def test_script_role_is_assumable_by_the_train_role_only(synthesized: Synth) -> None:
    _, template, _ = synthesized
    script_id, script = one(template, "AWS::IAM::Role", "ScriptRole")
    train_id, _ = one(template, "AWS::IAM::Role", "TrainRole")
    trust = script["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Action": "sts:AssumeRole", "Effect": "Allow",
                      "Principal": {"AWS": {"Fn::GetAtt": [train_id, "Arn"]}}}]
    assert granted(template, train_id)["sts:AssumeRole"] == [{"Fn::GetAtt": [script_id, "Arn"]}]
    env = project_env(template, "Train")
    assert env["TRAINSHIP_SCRIPT_ROLE_ARN"] == {"Fn::GetAtt": [script_id, "Arn"]}
    assert env["TRAINSHIP_MLFLOW_ARTIFACT_KMS_KEY_ARN"] == {"Fn::GetAtt": ["Key961B73FD", "Arn"]}


def test_script_role_may_log_to_mlflow_and_nothing_else(synthesized: Synth) -> None:
    _, template, _ = synthesized
    script_id, _ = one(template, "AWS::IAM::Role", "ScriptRole")
    grants = granted(template, script_id)
    server = {"Fn::GetAtt": ["Mlflow", "TrackingServerArn"]}
    assert MLFLOW_SCRIPT_ACTIONS, "trainship.script_access lists the script's actions"
    for action in MLFLOW_SCRIPT_ACTIONS:
        assert grants[action] == [server], action
    mlflow = {a for a in grants if a.startswith("sagemaker-mlflow:")}
    assert mlflow == set(MLFLOW_SCRIPT_ACTIONS)  # no registry writes, no deletes, no *
    bucket_id = one(template, "AWS::S3::Bucket", "MlflowArtifacts")[0]
    artifacts = json.dumps(grants["s3:PutObject"])
    assert bucket_id in artifacts and "Staging" not in json.dumps(grants)
    assert json.dumps(grants["s3:ListBucket"]) == json.dumps(
        [{"Fn::GetAtt": [bucket_id, "Arn"]}])
    assert "kms:GenerateDataKey" in grants and "kms:Decrypt" in grants
    assert not any(a.startswith(("ecr:", "eks:", "states:", "iam:", "sts:")) for a in grants)
    # the same ceiling the runtime documents (trainship.script_access.role_policy)
    ceiling = role_policy(tracking_server_arn="server", artifact_bucket_arns=["bucket"],
                          kms_key_arn="key")
    assert set(grants) == {a for st in ceiling["Statement"] for a in as_list(st["Action"])}


# --- item 2: the load balancer -------------------------------------------------------------

def test_cluster_functions_get_the_load_balancer_settings(synthesized: Synth,
                                                          variant: Synth) -> None:
    _, default, _ = synthesized
    _, other, _ = variant
    for step in CLUSTER_STEPS:
        assert function_env(default, step)["TRAINSHIP_LB_SCHEME"] == "internet-facing"
        assert function_env(default, step)["TRAINSHIP_LB_SOURCE_RANGES"] == ""
        assert function_env(other, step)["TRAINSHIP_LB_SCHEME"] == "internal"
        assert function_env(other, step)["TRAINSHIP_LB_SOURCE_RANGES"] == \
            "10.0.0.0/8,192.168.1.0/24"
    assert "TRAINSHIP_LB_SCHEME" not in function_env(default, "ValidateRequest")


@pytest.mark.parametrize("key,value", [
    ("loadBalancerScheme", "public"),
    ("loadBalancerSourceRanges", ["10.0.0.1/8"]),     # host bits set
    ("loadBalancerSourceRanges", ["0.0.0.0"]),        # a CIDR, or an address? refused
    ("clusterArchitecture", "x86"),
    ("mlflowVersion", "2.16"),
    ("mlflowArtifactBucket", "s3://bucket/prefix"),
    ("apiReservedConcurrency", -1),
])
def test_bad_new_context_is_refused(tmp_path: Path, key: str, value: Any) -> None:
    if value == ["0.0.0.0"]:
        # a bare address is a valid /32 network to ipaddress; AWS accepts it too
        synth(tmp_path, loadBalancerSourceRanges=value)
        return
    with pytest.raises(ValueError, match=key):
        synth(tmp_path, **{key: value})


# --- item 5: RecordFailure's 404 and the smoke test's cluster access ----------------------

def test_record_failure_can_tell_a_missing_error_document(synthesized: Synth) -> None:
    _, template, _ = synthesized
    role_id, _ = one(template, "AWS::IAM::Role", "ClusterRole")
    staging_id, _ = one(template, "AWS::S3::Bucket", "Staging")
    lists = [st for st in statements(template, role_id) if "s3:ListBucket" in as_list(
        st["Action"]) and staging_id in json.dumps(st["Resource"])]
    assert lists == [{"Action": "s3:ListBucket", "Effect": "Allow",
                      "Resource": {"Fn::GetAtt": [staging_id, "Arn"]},
                      "Condition": {"StringLike": {"s3:prefix": ["scripts/*"]}}}]


def test_smoke_test_uses_the_cluster_role(synthesized: Synth) -> None:
    _, template, _ = synthesized
    role_id, _ = one(template, "AWS::IAM::Role", "ClusterRole")
    _, smoke = one(template, "AWS::Lambda::Function", "SmokeTestModelFunction")
    assert smoke["Role"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert not [k for k in resources(template, "AWS::IAM::Role") if k.startswith("SmokeTest")]


# --- item 6: an existing tracking server --------------------------------------------------

def test_existing_mlflow_artifacts_reach_every_role_that_needs_them(variant: Synth) -> None:
    _, template, _ = variant
    bucket = f":s3:::{ARTIFACTS}"  # arn:<partition>:s3:::name
    for role in ("TrainRole", "ScriptRole", "ImageRole", "RegisterModelRole", "ClusterRole"):
        role_id, _ = one(template, "AWS::IAM::Role", role)
        grants = granted(template, role_id)
        assert f"{bucket}/*" in json.dumps(grants.get("s3:GetObject")), role
        assert f"{bucket}/*" in json.dumps(grants.get("s3:PutObject")), role
        assert f'{bucket}"' in json.dumps(grants.get("s3:ListBucket")), role
        assert ARTIFACT_KEY in json.dumps(grants["kms:Decrypt"]), role
    env = project_env(template, "Train")
    assert env["TRAINSHIP_MLFLOW_ARTIFACT_KMS_KEY_ARN"] == ARTIFACT_KEY
    script_id, _ = one(template, "AWS::IAM::Role", "ScriptRole")
    assert granted(template, script_id)["sagemaker-mlflow:LogModel"] == [TRACKING_ARN]


def test_build_projects_run_in_the_vpc(variant: Synth) -> None:
    _, template, _ = variant
    for prefix in ("Train", "Image"):
        project_id, props = one(template, "AWS::CodeBuild::Project", prefix)
        assert props["VpcConfig"] == {"VpcId": "vpc-0123456789abcdef0",
                                      "Subnets": ["subnet-0123456789abcdef0"],
                                      "SecurityGroupIds": ["sg-0123456789abcdef0"]}
        role_id = props["ServiceRole"]["Fn::GetAtt"][0]
        grants = granted(template, role_id)
        for action in ("ec2:CreateNetworkInterface", "ec2:DescribeDhcpOptions",
                       "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
                       "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
                       "ec2:DescribeVpcs", "ec2:CreateNetworkInterfacePermission"):
            assert action in grants, (prefix, action)
        # CodeBuild checks the permissions when the project is created
        depends = template["Resources"][project_id].get("DependsOn", [])
        vpc_policies = [k for k in resources(template, "AWS::IAM::Policy")
                        if k.startswith(f"{prefix}VpcPolicy")]
        assert vpc_policies and set(vpc_policies) <= set(depends), (prefix, depends)
    _, default_less = one(template, "AWS::CodeBuild::Project", "Train")
    assert "VpcConfig" in default_less


def test_vpc_needs_its_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vpcId"):
        synth(tmp_path, vpcSubnetIds=["subnet-0123456789abcdef0"],
              vpcSecurityGroupIds=["sg-0123456789abcdef0"])


# --- item 7: images that serve never expire -----------------------------------------------

def ecr_expired(policy: dict[str, Any], images: list[dict[str, Any]]) -> set[str]:
    """Amazon ECR's documented lifecycle evaluation ("How lifecycle policies work",
    "Lifecycle policy properties"): rules apply from the lowest rulePriority; an image
    matched by a rule's tag selection cannot be expired by a lower-priority rule; a
    tagPatternList (or tagPrefixList) selects images having every listed pattern;
    imageCountMoreThan keeps the newest countNumber of the images a rule selects."""
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
    for step in CLUSTER_STEPS:
        assert "TRAINSHIP_IMAGE_REPOSITORY" in function_env(template, step)


# --- item 9 (infra side): the staged job document --------------------------------------

def test_job_document_is_written_and_read_by_the_right_roles(synthesized: Synth) -> None:
    """ValidateRequest and RegisterModel stage <id>/job.json; both builds read it (the
    TRAINSHIP_JOB_URI override replaces the job passed in an environment value)."""
    _, template, _ = synthesized

    def objects(role: str, action: str) -> str:
        role_id, _ = one(template, "AWS::IAM::Role", role)
        return json.dumps(granted(template, role_id).get(action, []))

    for role in ("ValidateRequestRole", "RegisterModelRole"):
        assert "/scripts/*/job.json" in objects(role, "s3:PutObject"), role
        assert "Key961B73FD" in objects(role, "kms:GenerateDataKey"), role
    for role in ("TrainRole", "ImageRole"):
        assert "/scripts/*/job.json" in objects(role, "s3:GetObject"), role
        assert "/scripts/*/job.json" not in objects(role, "s3:PutObject"), role


# --- item 11: staged objects use the stack key ---------------------------------------------

def test_every_function_and_build_names_the_stack_key(synthesized: Synth) -> None:
    _, template, _ = synthesized
    key = {"Fn::GetAtt": ["Key961B73FD", "Arn"]}
    for fid, fn in resources(template, "AWS::Lambda::Function").items():
        assert fn["Properties"]["Environment"]["Variables"][
            "TRAINSHIP_STAGING_KMS_KEY_ID"] == key, fid
    for prefix in ("Train", "Image"):
        assert project_env(template, prefix)["TRAINSHIP_STAGING_KMS_KEY_ID"] == key


def test_mlflow_clients_run_without_telemetry(synthesized: Synth) -> None:
    """MLflow's telemetry thread, offline, deletes an os.environ key while other threads
    copy the environment: every MLflow client (functions, builds) runs with it off."""
    _, template, _ = synthesized
    for fid, fn in resources(template, "AWS::Lambda::Function").items():
        assert fn["Properties"]["Environment"]["Variables"][
            "MLFLOW_DISABLE_TELEMETRY"] == "true", fid
    for prefix in ("Train", "Image"):
        assert project_env(template, prefix)["MLFLOW_DISABLE_TELEMETRY"] == "true"


# --- item 12: the managed server's MLflow version ------------------------------------------

def test_managed_mlflow_version_is_pinned(synthesized: Synth, tmp_path: Path) -> None:
    _, template, _ = synthesized
    _, server = one(template, "AWS::SageMaker::MlflowTrackingServer", "Mlflow")
    assert server["MlflowVersion"] == "3.0"
    _, other, _ = synth(tmp_path, mlflowVersion="3.1")
    assert one(other, "AWS::SageMaker::MlflowTrackingServer", "Mlflow")[1][
        "MlflowVersion"] == "3.1"


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
    for step in CLUSTER_STEPS:
        assert function_env(default, step)["TRAINSHIP_CLUSTER_ARCH"] == "amd64"
        assert function_env(arm, step)["TRAINSHIP_CLUSTER_ARCH"] == "arm64"


# --- item 15: the Deep Learning Containers account ------------------------------------------

def test_deep_learning_container_account_comes_from_region_info(tmp_path: Path,
                                                                variant: Synth) -> None:
    _, gpu, _ = synth(tmp_path, trainCompute="gpu")
    _, train = one(gpu, "AWS::CodeBuild::Project", "Train")
    image = json.dumps(train["Environment"]["Image"])
    assert "Fn::FindInMap" in image  # the account of the region the stack lands in
    mapping = next(iter(gpu["Mappings"].values()))
    assert {"us-east-1", "eu-central-2", "ap-east-1", "cn-north-1"} <= set(mapping)
    assert len({v["value"] for v in mapping.values()}) > 1  # not one account for all
    _, pinned = one(variant[1], "AWS::CodeBuild::Project", "Train")
    assert "123456789012.dkr.ecr" in json.dumps(pinned["Environment"]["Image"])
    sources = "".join(p.read_text() for p in (REPO / "infra").glob("*.py"))
    assert "763104351884" not in sources


# --- item 16: reserved concurrency is opt-in ------------------------------------------------

def test_api_reserved_concurrency_is_opt_in(synthesized: Synth, variant: Synth) -> None:
    _, default, _ = synthesized
    _, api = one(default, "AWS::Lambda::Function", "ApiFunction")
    assert "ReservedConcurrentExecutions" not in api
    skips = {s["id"]: s["comment"] for s in
             default["Resources"][one(default, "AWS::Lambda::Function", "ApiFunction")[0]][
                 "Metadata"]["checkov"]["skip"]}
    assert "apiReservedConcurrency" in skips["CKV_AWS_115"]
    _, reserved = one(variant[1], "AWS::Lambda::Function", "ApiFunction")
    assert reserved["ReservedConcurrentExecutions"] == 5


# --- outputs for `trainship doctor` ---------------------------------------------------------

def test_outputs_for_doctor(synthesized: Synth) -> None:
    _, template, _ = synthesized
    outputs = template["Outputs"]
    role_id, _ = one(template, "AWS::IAM::Role", "ClusterRole")
    assert outputs["EksClusterName"]["Value"] == "trainship"
    assert outputs["EksNamespace"]["Value"] == "trainship"
    assert outputs["ClusterRoleArn"]["Value"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert outputs["LoadBalancerScheme"]["Value"] == "internet-facing"
    assert {"ApiUrl", "StateMachineArn", "RepositoryUri", "StagingBucket",
            "MlflowTrackingUri"} <= set(outputs)


def test_variant_passes_cdk_nag_cfn_lint_and_checkov(variant: Synth) -> None:
    _, _, outdir = variant
    report = json.loads((outdir / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success" and plugin["violations"] == []
    template = str(outdir / "Trainship.template.json")
    lint = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), "--format",
                           "parseable", template], capture_output=True, text=True)
    assert [line for line in lint.stdout.splitlines() if ":E" in line] == []
    checkov = REPO / ".venv" / "checkov" / "bin" / "checkov"
    proc = subprocess.run([str(checkov), "-f", template, "--framework", "cloudformation",
                           "--skip-download", "--compact", "-o", "json"],
                          capture_output=True, text=True)
    result = json.loads(proc.stdout)
    assert result["summary"]["failed"] == 0, [c["check_id"] for c in
                                               result["results"]["failed_checks"]]


def test_functions_in_the_vpc_wait_for_their_eni_permissions(variant: Synth) -> None:
    _, template, _ = variant
    for fid, fn in resources(template, "AWS::Lambda::Function").items():
        role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        policies = [k for k, v in resources(template, "AWS::IAM::Policy").items()
                    if {"Ref": role_id} in v["Properties"]["Roles"] and "VpcPolicy" in k]
        assert len(policies) == 1, fid
        assert policies[0] in fn.get("DependsOn", []), fid


def test_buildkit_image_can_be_a_copy(synthesized: Synth, variant: Synth) -> None:
    """A VPC without internet (or Docker Hub's anonymous pull limits) needs BuildKit from
    elsewhere: the context key reaches the image project, and is absent by default."""
    assert "TRAINSHIP_BUILDKIT_IMAGE" not in project_env(synthesized[1], "Image")
    assert project_env(variant[1], "Image")["TRAINSHIP_BUILDKIT_IMAGE"] == BUILDKIT_COPY
