"""The stack's parts, one module per concern; infra/stack.py composes them.

Each part is a plain class that builds its resources *in the stack's own scope*
(``scope=stack``), not a child ``Construct``: a child would put its id into every
resource's path and so into its logical id, and CloudFormation replaces a resource
whose logical id changes (new buckets, a new repository, new roles). Built this way the
template is the one the single-file stack synthesized, resource for resource.

    storage        the stack key, the staging and access-log buckets, the model repository,
                   encrypted log groups
    mlflow         the tracking server (SageMaker managed MLflow or an existing one)
    builds         the library source asset and the two CodeBuild projects
    functions      the Lambda roles and functions of the pipeline's Lambda states
    state_machine  TrainAndDeploy from infra/statemachine/deploy.asl.json
    api            the API function and the REST API in front of it
    nag            cdk-nag acknowledgments, checkov suppressions, least-privilege grants
"""
