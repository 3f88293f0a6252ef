"""Every time limit of a deployment, and how they nest.

Each limit sits inside the next, so the inner one always fires first and its failure is
caught by the state machine, which then runs RecordFailure (error document, rollback):

    script (request timeout_seconds, at most trainship.request.MAX_TIMEOUT_SECONDS)
      < train project build timeout (install requirements + script + upload)
      < queued timeout + build timeout < TrainModel state TimeoutSeconds
      < ... the worst path through the ASL, every retry taken, RecordFailure included
      < the execution timeout

The Task states' TimeoutSeconds live in infra/statemachine/deploy.asl.json (the file
the local stack runs too); tests/infra/test_limits.py recomputes the nesting from the
synthesized template and the ASL. A CodeBuild build that reaches its own timeout ends
TIMED_OUT, which startBuild.sync reports as a failed task (caught -> RecordFailure). The
state's timeout is only a backstop: Step Functions' CodeBuild integration page does not
say whether a state timeout stops the build, so no limit here relies on it (the build's
own timeout always fires first).
"""

from __future__ import annotations

from trainship.request import MAX_TIMEOUT_SECONDS

SCRIPT_MAX_SECONDS = MAX_TIMEOUT_SECONDS
# Provisioning, `pip install` of up to 50 requirements and the model upload come on top
# of the script's own limit.
TRAIN_BUILD_MINUTES = MAX_TIMEOUT_SECONDS // 60 + 30
IMAGE_BUILD_MINUTES = 60
# CodeBuild's queued timeout is separate from (and before) the build timeout.
BUILD_QUEUED_MINUTES = 60
# The rollout deadline CheckRollout enforces (TRAINSHIP_ROLLOUT_TIMEOUT_SECONDS) and the
# WaitForRollout interval (TRAINSHIP_ROLLOUT_POLL_SECONDS).
ROLLOUT_TIMEOUT_SECONDS = 600
ROLLOUT_POLL_SECONDS = 10
# The execution timeout is the ASL's top-level TimeoutSeconds (96 h): the worst path
# with every retry taken at full length is about 83 h: 24.8 h without a canary (four
# 3.6 h TrainModel attempts dominate), plus a canary's waits (at most
# trainship.canary.MAX_CANARY_SECONDS, 24 h) and up to 100 steps of ShiftTraffic and
# JudgeCanary with every retry (34 h); a deployment normally takes minutes. CDK's
# StateMachine(timeout=...) is not used: with DefinitionBody.from_string it never reaches
# the template.
