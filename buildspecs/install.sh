#!/bin/sh
# The buildspecs' install phase on CodeBuild: trainship from the build's source, with the
# extras this build needs, every package it adds at its version in requirements.lock
# (pip's -c: a constraints file pins what is installed and installs nothing itself; it may
# name no extras, the requirement here does). What the build image already has is left
# out of the constraints and stays as the image has it (lock_constraints.py says why).
#   [sagemaker]  the tracking URI is a SageMaker managed MLflow server's ARN: MLflow's
#                SigV4 plugin for it (sagemaker-mlflow)
#   [aws]        boto3: the runner assumes TRAINSHIP_SCRIPT_ROLE_ARN for the script (STS),
#                or the image is pushed to ECR (GetAuthorizationToken)
set -eu
extras=""
case "${MLFLOW_TRACKING_URI:-}" in arn:*) extras="sagemaker" ;; esac
case "${TRAINSHIP_SCRIPT_ROLE_ARN:-}|${TRAINSHIP_IMAGE_REPOSITORY:-}" in
  # an ECR registry (trainship.image_pins.ECR_HOST): dkr.ecr[-fips], dual-stack dkr-ecr[-fips]
  ?*\|* | *\|*.dkr.ecr.* | *\|*.dkr.ecr-fips.* | *\|*.dkr-ecr.* | *\|*.dkr-ecr-fips.*)
    extras="${extras:+${extras},}aws" ;;
esac
constraints="$(mktemp)"
python3 "${CODEBUILD_SRC_DIR}/buildspecs/lock_constraints.py" \
  "${CODEBUILD_SRC_DIR}/requirements.lock" > "${constraints}"
exec python3 -m pip install --quiet -c "${constraints}" "${CODEBUILD_SRC_DIR}${extras:+[${extras}]}"
