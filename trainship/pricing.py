"""The price table of the cost receipt (trainship.cost): AWS list prices, one file, dated.

US East (N. Virginia), us-east-1, on-demand list prices in USD, before the free tiers
(Step Functions: 4,000 state transitions a month; Lambda: 1M requests and 400,000
GB-seconds a month; CodeBuild: its free build minutes), Savings Plans, credits and taxes:
the receipt says what a run costs at list price, not what an account's bill will show.

Each price names the page it was read from, as stored on PRICES_AS_OF. When AWS changes a
price, change it here, with the date and the source; nothing else holds a price.
A price that is not in the stored pages is left out rather than guessed: the receipt
reports that usage's minutes without a price and says so (``unpriced``).

A bottom layer: it imports nothing from trainship.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2026-11-28"
REGION = "us-east-1"
CURRENCY = "USD"


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str


# --- Step Functions, Standard workflows -----------------------------------------------------
# "Step Functions counts a state transition each time a step of your workflow is executed
# ... including retries"; "If you include retry error handling in any steps of your
# workflow, each retry will be charged as an additional state transition."
# US East (N. Virginia): $0.0250 per 1,000 state transitions.
STATE_TRANSITION = Price(0.025 / 1000, "state transition",
                         "https://aws.amazon.com/step-functions/pricing/")

# --- Lambda ---------------------------------------------------------------------------------
# Duration is billed per GB-second, each invocation's duration rounded up to the nearest
# millisecond (https://aws.amazon.com/blogs/aws/new-for-aws-lambda-1ms-billing-granularity-
# adds-cost-savings/, as re-posted at slacker.ro/2020/12/01/...). The first tier's prices
# (first 6 billion GB-s a month on x86, 7.5 billion on Arm); aws.amazon.com/lambda/pricing/
# renders its rate table client-side, so the stored copy lacks the numbers: they are read
# from pages that quote it (cloudchipr.com/blog/aws-lambda-pricing "based on the US East
# (N. Virginia) region"; artillery's prices.js, base x86_64 1666670 / arm64 1333340 e-11).
LAMBDA_PRICING_PAGE = "https://aws.amazon.com/lambda/pricing/"
LAMBDA_REQUEST = Price(0.20 / 1_000_000, "request", LAMBDA_PRICING_PAGE)
LAMBDA_GB_SECOND = {
    "x86_64": Price(0.0000166667, "GB-second", LAMBDA_PRICING_PAGE),
    "arm64": Price(0.0000133334, "GB-second", LAMBDA_PRICING_PAGE),
}

# --- CodeBuild, on-demand EC2 compute -------------------------------------------------------
# Per build minute by (environment type, compute type). The stored pages quote the Linux
# x86 general1 small/medium/large rates only (c3x.dev/resources/aws/aws_codebuild_project,
# kindatechnical.com/aws-codebuild/understanding-codebuild-pricing.html, citing
# aws.amazon.com/codebuild/pricing/, whose own table is not in the stored copy). Arm
# (ARM_CONTAINER: what BuildImage runs on for an arm64 cluster), GPU (LINUX_GPU_CONTAINER:
# trainCompute=gpu), XLARGE and 2XLARGE prices are not in the stored pages: those builds are
# reported with their minutes and no price. Rounding: CodeBuild prices "per build minute";
# the receipt bills each build's duration (StartTime to EndTime) rounded up to whole minutes
# (an upper bound: StartTime includes time the build waited in the queue).
CODEBUILD_PRICING_PAGE = "https://aws.amazon.com/codebuild/pricing/"
BUILD_MINUTE = {
    ("LINUX_CONTAINER", "BUILD_GENERAL1_SMALL"): Price(0.005, "build minute",
                                                       CODEBUILD_PRICING_PAGE),
    ("LINUX_CONTAINER", "BUILD_GENERAL1_MEDIUM"): Price(0.01, "build minute",
                                                        CODEBUILD_PRICING_PAGE),
    ("LINUX_CONTAINER", "BUILD_GENERAL1_LARGE"): Price(0.02, "build minute",
                                                       CODEBUILD_PRICING_PAGE),
}

# What the receipt leaves out (docs/deploy-to-aws.md, "The cost receipt", says why).
EXCLUDED = (
    "free tiers, Savings Plans, credits and taxes (list prices)",
    "API Gateway requests and the API function's invocations (status polls)",
    "S3 storage and requests (staging bucket, MLflow artifacts)",
    "ECR image storage",
    "the EKS cluster, its nodes and the load balancer's hours",
    "SageMaker managed MLflow",
    "CloudWatch Logs, X-Ray, KMS requests",
    "data transfer",
    "a redrive's own state transition, if AWS bills one (its states are counted)",
)
