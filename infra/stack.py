"""The trainship pipeline on AWS: API Gateway -> Step Functions -> Lambda + CodeBuild.

The state machine is infra/statemachine/deploy.asl.json, the same file the local stack
runs; which state runs which handler or buildspec is trainship.pipeline. The Lambda
handlers are lambdas/, the build specs buildspecs/. Each concern is a part in
infra/constructs/ (built in this stack's scope: see that package's docstring).
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.config import Config
from infra.constructs.api import Api
from infra.constructs.builds import Builds
from infra.constructs.functions import Functions
from infra.constructs.mlflow import Mlflow
from infra.constructs.state_machine import state_machine
from infra.constructs.storage import Storage, log_retention


class TrainshipStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config,
                 **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.storage = Storage(self, log_retention(config.log_retention_days))
        self.mlflow = Mlflow(self, config, self.storage)
        self.builds = Builds(self, config, self.storage, self.mlflow)
        self.functions = Functions(self, config, self.storage, self.mlflow)
        self.state_machine = state_machine(self, self.storage, self.functions, self.builds)
        self.api = Api(self, config, self.storage, self.functions, self.builds,
                       self.state_machine)

        cdk.CfnOutput(self, "ApiUrl", value=self.api.rest_api.url)
        cdk.CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "RepositoryUri", value=self.storage.repository.repository_uri)
        cdk.CfnOutput(self, "StagingBucket", value=self.storage.staging.bucket_name)
        cdk.CfnOutput(self, "MlflowTrackingUri", value=self.mlflow.tracking_uri)
        # what `trainship doctor` checks the account against
        cdk.CfnOutput(self, "EksClusterName", value=config.eks_cluster_name)
        cdk.CfnOutput(self, "EksNamespace", value=config.eks_namespace)
        cdk.CfnOutput(self, "ClusterRoleArn", value=self.functions.cluster_role.role_arn)
        cdk.CfnOutput(self, "LoadBalancerScheme", value=config.load_balancer_scheme)
