"""The CDK app: key properties of each resource, least privilege, the lint gates."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.constructs.mlflow import REGISTRY_READ_ACTIONS
from tests.infra.helpers import Synth, definition_with_substitutions, synth
from trainship import openapi
from trainship.models import API_MLFLOW_ENV
from trainship.pipeline import ASL_PATH, LAMBDA_STEPS

REPO = Path(__file__).resolve().parents[2]


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def role_statements(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    role_ids = [k for k in resources(template, "AWS::IAM::Role") if k.startswith(role_prefix)]
    assert len(role_ids) == 1, role_ids
    statements: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_ids[0]} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    role = template["Resources"][role_ids[0]]["Properties"]
    assert not role.get("ManagedPolicyArns"), "no managed policies on trainship roles"
    return statements


def actions(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for st in statements:
        acts = st["Action"]
        found.update([acts] if isinstance(acts, str) else acts)
    return found


def test_training_role_cannot_push_images_or_touch_eks(synthesized: Synth) -> None:
    _, template, _ = synthesized
    granted = actions(role_statements(template, "TrainRole"))
    assert "s3:GetObject" in granted and "s3:PutObject" in granted
    assert not any(a.startswith(("ecr:", "eks:")) for a in granted), granted  # no push, no EKS
    assert not any(a in ("*", "s3:*", "iam:PassRole") for a in granted)
    image = actions(role_statements(template, "ImageRole"))
    assert "ecr:PutImage" in image and not any(a.startswith("eks:") for a in image)


def test_api_role_only_starts_and_reads_this_state_machine(synthesized: Synth) -> None:
    _, template, _ = synthesized
    machine_id = next(iter(resources(template, "AWS::StepFunctions::StateMachine")))
    statements = role_statements(template, "ApiRole")
    states = [st for st in statements if any(a.startswith("states:") for a in
                                             ([st["Action"]] if isinstance(st["Action"], str)
                                              else st["Action"]))]
    assert actions(states) == {"states:StartExecution", "states:ListExecutions",
                               "states:DescribeExecution", "states:GetExecutionHistory",
                               "states:RedriveExecution"}
    for st in states:
        assert machine_id in json.dumps(st["Resource"]), st
    redrive = [st for st in states if "states:RedriveExecution" in json.dumps(st["Action"])]
    assert len(redrive) == 1 and ":execution:" in json.dumps(redrive[0]["Resource"])
    # on executions only (CDK merges it with the reads of the same resources)
    assert actions(redrive) == {"states:RedriveExecution", "states:DescribeExecution",
                                "states:GetExecutionHistory"}
    others = actions(statements) - actions(states)
    # POST /models/{name}/rollback reads the registry and asks ECR for the version's image
    assert others <= {"logs:GetLogEvents", "logs:CreateLogStream", "logs:PutLogEvents",
                      "xray:PutTraceSegments", "xray:PutTelemetryRecords", "kms:Decrypt",
                      "ecr:DescribeImages", *REGISTRY_READ_ACTIONS}, others


def test_api_reads_the_mlflow_registry_only_with_short_retries(synthesized: Synth) -> None:
    """GET /models: the registry's read actions on this tracking server, nothing that writes
    and no artifacts; MLflow's HTTP retries kept within API Gateway's 29 s."""
    _, template, _ = synthesized
    server_id = next(iter(resources(template, "AWS::SageMaker::MlflowTrackingServer")))
    mlflow = [st for st in role_statements(template, "ApiRole")
              if "sagemaker-mlflow:" in json.dumps(st["Action"])]
    assert actions(mlflow) == set(REGISTRY_READ_ACTIONS) == {
        "sagemaker-mlflow:SearchRegisteredModels", "sagemaker-mlflow:GetRegisteredModel",
        "sagemaker-mlflow:SearchModelVersions", "sagemaker-mlflow:GetModelVersion",
        "sagemaker-mlflow:GetModelVersionByAlias"}
    assert all(st["Effect"] == "Allow" and st["Resource"] == {
        "Fn::GetAtt": [server_id, "TrackingServerArn"]} for st in mlflow), mlflow
    api = next(f for k, f in resources(template, "AWS::Lambda::Function").items()
               if k.startswith("ApiFunction"))
    env = api["Properties"]["Environment"]["Variables"]
    assert env["MLFLOW_TRACKING_URI"] == {"Fn::GetAtt": [server_id, "TrackingServerArn"]}
    assert {k: env[k] for k in API_MLFLOW_ENV} == API_MLFLOW_ENV
    assert int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) <= 1
    assert int(env["MLFLOW_HTTP_REQUEST_TIMEOUT"]) * 2 + 2 < 29


def test_state_machine_definition_is_the_asl_file(synthesized: Synth) -> None:
    _, template, _ = synthesized
    definition, substitutions = definition_with_substitutions(template)
    assert definition == json.loads(ASL_PATH.read_text())
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL_PATH.read_text()))
    assert set(substitutions) == placeholders
    machine = next(iter(resources(template, "AWS::StepFunctions::StateMachine").values()))
    props = machine["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    # the states' input and output carry inference tokens: never in CloudWatch Logs
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False


def test_no_function_sends_its_response_to_x_ray(synthesized: Synth) -> None:
    """Handler responses carry inference tokens; every function is traced (ACTIVE)."""
    _, template, _ = synthesized
    fns = resources(template, "AWS::Lambda::Function").values()
    traced = [f for f in fns if f["Properties"].get("TracingConfig") == {"Mode": "Active"}]
    assert traced and all(
        f["Properties"]["Environment"]["Variables"]["POWERTOOLS_TRACER_CAPTURE_RESPONSE"]
        == "false" for f in traced)


def test_state_machine_role_is_explicit(synthesized: Synth) -> None:
    _, template, _ = synthesized
    statements = role_statements(template, "StateMachineRole")
    granted = actions(statements)
    assert {"lambda:InvokeFunction", "codebuild:StartBuild", "codebuild:StopBuild",
            "codebuild:BatchGetBuilds", "events:PutTargets", "events:PutRule",
            "events:DescribeRule"} <= granted
    events = next(st for st in statements if "events:PutRule" in st["Action"])
    assert "StepFunctionsGetEventForCodeBuildStartBuildRule" in json.dumps(events["Resource"])
    build = next(st for st in statements if "codebuild:StartBuild" in st["Action"])
    assert len(build["Resource"]) == 2


def test_api_requires_iam_auth_and_validates_bodies(synthesized: Synth) -> None:
    _, template, _ = synthesized
    methods = resources(template, "AWS::ApiGateway::Method")
    # the routes of docs/openapi.json, /openapi.json and POST .../redrive included
    # with /models, its rollback and POST /models/{model_name}/token
    assert len(methods) == len(openapi.routes()) == 12
    for method in methods.values():
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
    # the operations with a request body (POST /deployments, /mlops/deploy; not POST
    # .../redrive, which has none) are validated against the request model first
    validated = [m for m in methods.values() if "RequestValidatorId" in m["Properties"]]
    # (POST /models/{name}/rollback's small body the function checks itself)
    assert len(validated) == sum(openapi.takes_deployment_request(op)
                                 for _, _, op in openapi.routes()) == 2
    assert all(m["Properties"]["HttpMethod"] == "POST" and m["Properties"]["RequestModels"]
               for m in validated)
    stage = next(iter(resources(template, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["TracingEnabled"] is True and "AccessLogSetting" in stage
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 10
    model = next(iter(resources(template, "AWS::ApiGateway::Model").values()))["Properties"]
    assert model["Schema"]["additionalProperties"] is False
    assert model["Schema"]["required"] == ["model_name"]


def test_functions_are_arm64_current_python_traced_json_logs(synthesized: Synth) -> None:
    _, template, _ = synthesized
    functions = resources(template, "AWS::Lambda::Function")
    # one per Lambda state of the pipeline table (DeploymentFailed, RemoveModel,
    # PrepareRollback, RotateToken, ShiftTraffic and JudgeCanary included), and the API's
    assert len(functions) == len(LAMBDA_STEPS) + 1 == 14
    for fn in functions.values():
        props = fn["Properties"]
        assert props["Runtime"] == "python3.14" and props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert props["Handler"].startswith("lambdas.")
    api = next(f for k, f in functions.items() if k.startswith("ApiFunction"))
    # item 16: opt-in (new accounts have a concurrency quota of 10, all unreserved)
    assert "ReservedConcurrentExecutions" not in api["Properties"]
    for group in resources(template, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 30


def test_codebuild_projects(synthesized: Synth) -> None:
    _, template, _ = synthesized
    projects = {k.rstrip("0123456789ABCDEF"): v["Properties"]
                for k, v in resources(template, "AWS::CodeBuild::Project").items()}
    train, image = projects["Train"], projects["Image"]
    assert train["Environment"].get("PrivilegedMode") is not True
    assert image["Environment"]["PrivilegedMode"] is True
    assert train["Source"]["BuildSpec"] == "buildspecs/train.yml"
    assert image["Source"]["BuildSpec"] == "buildspecs/image.yml"
    assert train["TimeoutInMinutes"] > 120 and image["TimeoutInMinutes"] == 60  # test_limits
    env = {v["Name"] for v in image["Environment"]["EnvironmentVariables"]}
    assert {"TRAINSHIP_IMAGE_REPOSITORY", "TRAINSHIP_BASE_IMAGE", "MLFLOW_TRACKING_URI"} <= env


def test_storage_repository_and_eks_access(synthesized: Synth) -> None:
    _, template, _ = synthesized
    repo = next(iter(resources(template, "AWS::ECR::Repository").values()))["Properties"]
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repo["ImageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert "LifecyclePolicy" in repo
    buckets = resources(template, "AWS::S3::Bucket")
    staging = next(v for k, v in buckets.items() if k.startswith("Staging"))["Properties"]
    assert staging["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert staging["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert "LoggingConfiguration" in staging and "LifecycleConfiguration" in staging
    policies = json.dumps(resources(template, "AWS::S3::BucketPolicy"))
    assert '"aws:SecureTransport": "false"' in policies
    entries = resources(template, "AWS::EKS::AccessEntry")
    # RemoveModel's and RotateToken's own roles
    assert sorted(entries) == ["DeployAccess", "RemoveAccess", "RotateTokenAccess"]
    for entry in entries.values():
        scope = entry["Properties"]["AccessPolicies"][0]["AccessScope"]
        assert scope == {"Type": "namespace", "Namespaces": ["trainship"]}
        assert entry["Properties"]["AccessPolicies"][0]["PolicyArn"]["Fn::Join"][1][-1] \
            .endswith("AmazonEKSEditPolicy")
    keys = resources(template, "AWS::KMS::Key")
    assert all(k["Properties"]["EnableKeyRotation"] for k in keys.values())


def test_managed_mlflow_vs_existing_tracking_uri(synthesized: Synth, tmp_path: Path) -> None:
    _, template, _ = synthesized
    assert resources(template, "AWS::SageMaker::MlflowTrackingServer")
    stack, other, _ = synth(tmp_path, mlflowTrackingUri="https://mlflow.example.internal",
                        trainCompute="gpu", apiAuth="none",
                        vpcId="vpc-0123456789abcdef0",
                        vpcSubnetIds=["subnet-0123456789abcdef0"],
                        vpcSecurityGroupIds=["sg-0123456789abcdef0"])
    assert not resources(other, "AWS::SageMaker::MlflowTrackingServer")
    train = next(v for k, v in resources(other, "AWS::CodeBuild::Project").items()
                 if k.startswith("Train"))["Properties"]["Environment"]
    assert "pytorch-training" in json.dumps(train["Image"])
    fns = resources(other, "AWS::Lambda::Function").values()
    subnets = [f["Properties"]["VpcConfig"]["SubnetIds"] for f in fns]
    assert subnets and all(s == ["subnet-0123456789abcdef0"] for s in subnets)
    methods = resources(other, "AWS::ApiGateway::Method").values()
    assert all(m["Properties"]["AuthorizationType"] == "NONE" for m in methods)
    # a server given by URL: its own auth, no IAM for the API's registry reads
    assert not any(a.startswith("sagemaker-mlflow:")
                   for a in actions(role_statements(other, "ApiRole")))
    # apiAuth none with token auth (the default): a synth warning says who reads tokens
    from aws_cdk.assertions import Annotations, Match
    warned = Annotations.from_stack(stack).find_warning(
        "*", Match.string_like_regexp("reads every deployment's inference token"))
    assert warned
    gpu_train = actions(role_statements(other, "TrainRole"))
    assert "ecr:PutImage" not in gpu_train
    assert not any(a.startswith("eks:") for a in gpu_train)


def test_bad_context_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trainCompute"):
        synth(tmp_path, trainCompute="huge")
    with pytest.raises(ValueError, match="vpcSubnetIds"):
        synth(tmp_path, vpcSubnetIds=["subnet-0123456789abcdef0"])


def test_cdk_nag_report_has_no_violations(synthesized: Synth) -> None:
    _, _, outdir = synthesized
    report = json.loads((outdir / "validation-report.json").read_text())
    plugins = {p["pluginName"]: p for p in report["pluginReports"]}
    assert "AwsSolutions" in plugins
    for plugin in plugins.values():
        assert plugin["conclusion"] == "success" and plugin["violations"] == []
        for suppressed in plugin.get("suppressedViolations", []):
            assert len(suppressed["reason"]) >= 10, suppressed["ruleName"]


def test_cfn_lint_has_no_errors(synthesized: Synth) -> None:
    _, _, outdir = synthesized
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(cfn_lint), "--format", "parseable",
                           str(outdir / "Trainship.template.json")],
                          capture_output=True, text=True)
    errors = [line for line in proc.stdout.splitlines() if ":E" in line]
    assert errors == [], errors


def test_checkov_has_no_unjustified_failures(synthesized: Synth) -> None:
    _, _, outdir = synthesized
    checkov = REPO / ".venv" / "checkov" / "bin" / "checkov"
    assert checkov.exists(), "make test installs checkov into .venv/checkov"
    proc = subprocess.run([str(checkov), "-f", str(outdir / "Trainship.template.json"),
                           "--framework", "cloudformation", "--skip-download", "--compact",
                           "-o", "json"], capture_output=True, text=True)
    result = json.loads(proc.stdout)
    assert result["summary"]["failed"] == 0, [c["check_id"] for c in
                                               result["results"]["failed_checks"]]
    assert result["summary"]["passed"] > 200
    for skipped in result["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) >= 10, skipped


def test_assets_carry_the_sources_and_nothing_of_the_checkout(synthesized: Synth) -> None:
    """The Lambda code and the library source hold what they name, not the checkout's
    .git, .venv or tool caches (which would also make their hashes differ per machine)."""
    _, _, outdir = synthesized
    contents = {frozenset(p.name for p in asset.iterdir()) for asset in outdir.glob("asset.*")}
    assert contents == {frozenset({"lambdas", "trainship"}),
                        frozenset({"README.md", "buildspecs", "pyproject.toml", "requirements.lock",
                                   "trainship"})}
    for asset in outdir.glob("asset.*"):
        assert not [p for p in asset.rglob(".*")], asset.name


def test_only_remove_model_may_delete_images(synthesized: Synth) -> None:
    """A purge deletes the model's images: ecr:BatchDeleteImage is RemoveModel's alone (its
    own role, with the same EKS access as DeployModel's through its own access entry)."""
    _, template, _ = synthesized
    remove = role_statements(template, "RemoveModelRole")
    granted = actions(remove)
    assert {"ecr:ListImages", "ecr:BatchDeleteImage", "eks:DescribeCluster",
            "states:ListExecutions", "states:DescribeExecution"} <= granted
    assert "ecr:PutImage" not in granted  # it deletes; it never pushes or pins
    delete = next(st for st in remove if "ecr:BatchDeleteImage" in st["Action"])
    repository = next(k for k in resources(template, "AWS::ECR::Repository"))
    assert delete["Resource"] == {"Fn::GetAtt": [repository, "Arn"]}  # the repository only
    remove_role = next(k for k in resources(template, "AWS::IAM::Role")
                       if k.startswith("RemoveModelRole"))
    for policy in resources(template, "AWS::IAM::Policy").values():
        if "ecr:BatchDeleteImage" in json.dumps(policy["Properties"]["PolicyDocument"]):
            assert policy["Properties"]["Roles"] == [{"Ref": remove_role}]
    functions = resources(template, "AWS::Lambda::Function")
    remove_fn = next(f for k, f in functions.items() if k.startswith("RemoveModelFunction"))
    env = remove_fn["Properties"]["Environment"]["Variables"]
    assert "STATE_MACHINE_ARN" in env and env["TRAINSHIP_CLUSTER"] == "kubernetes"


def test_rotate_token_writes_the_auth_secret_through_its_own_access_entry(
        synthesized: Synth) -> None:
    """RotateToken (trainship.token_rotation): its own role with the EKS access entry it
    needs to write the model's auth Secret, the registry read, the running-execution check;
    nothing of the deploying or deleting roles' rights (pins, image deletes)."""
    _, template, _ = synthesized
    rotate = role_statements(template, "RotateTokenRole")
    granted = actions(rotate)
    assert {"eks:DescribeCluster", "states:ListExecutions", "states:DescribeExecution",
            *REGISTRY_READ_ACTIONS} <= granted
    assert not {"ecr:BatchDeleteImage", "ecr:PutImage", "states:StartExecution"} & granted
    assert not [a for a in granted if a.startswith("s3:")]
    role = next(k for k in resources(template, "AWS::IAM::Role") if k.startswith("RotateTokenRole"))
    entry = resources(template, "AWS::EKS::AccessEntry")["RotateTokenAccess"]["Properties"]
    assert entry["PrincipalArn"] == {"Fn::GetAtt": [role, "Arn"]}
    functions = resources(template, "AWS::Lambda::Function")
    fn = next(f for k, f in functions.items() if k.startswith("RotateTokenFunction"))
    assert fn["Properties"]["Handler"] == "lambdas.rotate_token.handler"
    assert fn["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    env = fn["Properties"]["Environment"]["Variables"]
    assert "STATE_MACHINE_ARN" in env and env["TRAINSHIP_CLUSTER"] == "kubernetes"
    # the route: POST /models/{model_name}/token, signed like every other
    paths = {v["Properties"]["PathPart"]: k
             for k, v in resources(template, "AWS::ApiGateway::Resource").items()}
    token = paths["token"]
    methods = [m["Properties"] for m in resources(template, "AWS::ApiGateway::Method").values()
               if m["Properties"]["ResourceId"] == {"Ref": token}]
    assert [m["HttpMethod"] for m in methods] == ["POST"]
    assert methods[0]["AuthorizationType"] == "AWS_IAM"


def test_new_models_get_token_auth_on_aws_unless_the_context_says_none(
        synthesized: Synth, variant: Synth) -> None:
    """trainship:defaultAuth (default token) reaches DeployModel as TRAINSHIP_DEFAULT_AUTH."""
    for (_, template, _), expected in ((synthesized, "token"), (variant, "none")):
        functions = resources(template, "AWS::Lambda::Function")
        deploy = next(f for k, f in functions.items() if k.startswith("DeployModelFunction"))
        assert deploy["Properties"]["Environment"]["Variables"][
            "TRAINSHIP_DEFAULT_AUTH"] == expected


def test_new_versions_go_canary_on_aws_unless_the_context_says_all_at_once(
        synthesized: Synth, variant: Synth) -> None:
    """trainship:defaultRollout (default canary) reaches DeployModel as
    TRAINSHIP_DEFAULT_ROLLOUT; the canary's steps run as the cluster role, like the smoke
    test (the traffic split and the pods' /metrics through the API server)."""
    for (_, template, _), expected in ((synthesized, "canary"), (variant, "all-at-once")):
        functions = resources(template, "AWS::Lambda::Function")
        deploy = next(f for k, f in functions.items() if k.startswith("DeployModelFunction"))
        assert deploy["Properties"]["Environment"]["Variables"][
            "TRAINSHIP_DEFAULT_ROLLOUT"] == expected
        smoke = next(f for k, f in functions.items() if k.startswith("SmokeTestModelFunction"))
        for state, module in (("ShiftTraffic", "shift_traffic"),
                              ("JudgeCanary", "judge_canary")):
            fn = next(f for k, f in functions.items() if k.startswith(f"{state}Function"))
            assert fn["Properties"]["Handler"] == f"lambdas.{module}.handler"
            assert fn["Properties"]["Role"] == smoke["Properties"]["Role"]
            assert fn["Properties"]["Environment"]["Variables"]["TRAINSHIP_CLUSTER"] == \
                "kubernetes"
