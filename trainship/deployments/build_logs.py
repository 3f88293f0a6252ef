"""A deployment's build logs: each build's log (from its file or CloudWatch Logs), then
the error document; the text of GET /deployments/{id}/logs."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from trainship.records import RecordJson


def read_build_log(logs: dict[str, Any], limit_bytes: int = 1 << 20) -> str:
    """A build's log: from the file it names, or from CloudWatch Logs."""
    link = str(logs.get("DeepLink") or "")
    if link.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(link).path))
        return path.read_text(errors="replace")[-limit_bytes:] if path.exists() else ""
    group, stream = logs.get("GroupName"), logs.get("StreamName")
    if not group or not stream:
        return ""
    import boto3  # only on AWS (the Lambda bundle carries it; the [aws] extra elsewhere)

    client = boto3.client("logs")
    lines: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream,
                                  "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        page = client.get_log_events(**kwargs)
        lines.extend(e["message"].rstrip("\n") for e in page["events"])
        if page.get("nextForwardToken") in (None, token):
            break
        token = page["nextForwardToken"]
    return "\n".join(lines)[-limit_bytes:]


def logs_text(record: RecordJson) -> str:
    """Each build's log under a header line, then the error document (unredacted)."""
    parts = []
    for build in record.get("builds", []):
        parts.append(f"===== {build['step']} build {build['build_id']} "
                     f"({build['status']}) =====")
        parts.append(read_build_log(build.get("logs") or {}))
    if record.get("error"):
        parts.append(f"===== error =====\n{json.dumps(record.get('error'), indent=2)}")
    return "\n".join(parts) + "\n"
