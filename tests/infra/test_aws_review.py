"""Issue 10, infra side: what a review against AWS's documentation found, as template
assertions (each would fail on the stack as it was). Roles, grants and settings here;
images and builds in test_aws_review_images.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.helpers import (
    ARTIFACT_KEY,
    ARTIFACTS,
    CERTIFICATE,
    CLUSTER_STATES,
    REPO,
    TRACKING_ARN,
    Synth,
    as_list,
    function_env,
    granted,
    one,
    project_env,
    resources,
    statements,
    synth,
)
from trainship.script_access import MLFLOW_SCRIPT_ACTIONS, role_policy

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
    for step in CLUSTER_STATES:
        assert function_env(default, step)["TRAINSHIP_LB_SCHEME"] == "internet-facing"
        assert function_env(default, step)["TRAINSHIP_LB_SOURCE_RANGES"] == ""
        assert function_env(other, step)["TRAINSHIP_LB_SCHEME"] == "internal"
        assert function_env(other, step)["TRAINSHIP_LB_SOURCE_RANGES"] == \
            "10.0.0.0/8,192.168.1.0/24"
        # trainship:certificateArn: HTTPS on the load balancer (finding 5 of the auth review)
        assert function_env(default, step)["TRAINSHIP_LB_CERTIFICATE_ARN"] == ""
        assert function_env(other, step)["TRAINSHIP_LB_CERTIFICATE_ARN"] == CERTIFICATE
    assert "TRAINSHIP_LB_SCHEME" not in function_env(default, "ValidateRequest")


def test_cluster_functions_get_the_serving_workers(synthesized: Synth, variant: Synth) -> None:
    """DeployModel renders TRAINSHIP_SERVING_WORKERS into the pods' --workers: without it
    in the functions' environment every pod on EKS ran one worker (issue 12)."""
    _, default, _ = synthesized
    _, other, _ = variant
    for step in CLUSTER_STATES:
        assert function_env(default, step)["TRAINSHIP_SERVING_WORKERS"] == "1"
        assert function_env(other, step)["TRAINSHIP_SERVING_WORKERS"] == "4"
    assert "TRAINSHIP_SERVING_WORKERS" not in function_env(default, "ValidateRequest")


def test_a_certificate_needs_a_load_balancer() -> None:
    from infra.config import Config

    Config(certificate_arn=CERTIFICATE).validate()
    with pytest.raises(ValueError, match="certificateArn needs trainship:serviceType"):
        Config(certificate_arn=CERTIFICATE, service_type="ClusterIP").validate()


@pytest.mark.parametrize("key,value", [
    ("loadBalancerScheme", "public"),
    ("loadBalancerSourceRanges", ["10.0.0.1/8"]),     # host bits set
    ("loadBalancerSourceRanges", ["0.0.0.0"]),        # a CIDR, or an address? refused
    ("clusterArchitecture", "x86"),
    ("servingWorkers", 0),
    ("mlflowVersion", "2.16"),
    ("mlflowArtifactBucket", "s3://bucket/prefix"),
    ("apiReservedConcurrency", -1),
    ("defaultAuth", "basic"),
    ("defaultRollout", "blue-green"),
    ("certificateArn", "my-certificate"),
    ("certificateArn", "arn:aws:iam::111122223333:server-certificate/web"),
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
