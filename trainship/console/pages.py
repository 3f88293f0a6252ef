"""The console's HTML (pure: views in, text out; every value through html.escape).

Plain server-rendered pages with a small inline style sheet and script: no CDN, no build
step. The ids and classes are the contract the browser tests rely on (docs/console.md)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from trainship.console import graph
from trainship.console.data import DeploymentView, HomeView, MlflowView, StatusView
from trainship.console.graph import StateRun
from trainship.console.history import StateDetail

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#16191f;background:#f2f3f3}
header{background:#232f3e;color:#fff;padding:10px 20px}header a{color:#fff}
main{padding:16px 20px;max-width:1200px}
section{background:#fff;border:1px solid #d5dbdb;border-radius:4px;padding:12px 16px;
margin:0 0 16px}
h1{font-size:20px;margin:4px 0}h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeded}
pre{background:#fafafa;border:1px solid #eaeded;padding:8px;overflow:auto;max-height:420px;
white-space:pre-wrap}
.st-SUCCEEDED{color:#1d8102}.st-FAILED,.st-TIMED_OUT,.st-ABORTED{color:#d13212}.st-RUNNING{color:#0073bb}
#error{border-color:#d13212;background:#fff6f5}.error-name{font-weight:bold;color:#d13212}
.error-help{background:#fff;border-left:4px solid #ff9900;padding:6px 10px}
.graph-wrap{display:flex;gap:16px;align-items:flex-start}.graph-wrap>div{overflow:auto}
#failure-logs{max-height:none}#state-detail{flex:1;min-width:300px}g.state{cursor:pointer}
textarea{width:100%;min-height:140px;font-family:monospace}
"""

SCRIPT = """
(function(){
  var base = document.body.dataset.deployment;
  if (!base) return;
  base = '/deployments/' + encodeURIComponent(base);
  function show(el){
    var name = el.getAttribute('data-state');
    fetch(base + '/states/' + encodeURIComponent(name)).then(function(r){return r.text();})
      .then(function(t){document.getElementById('state-detail').innerHTML = t;});
  }
  document.addEventListener('click', function(e){
    var g = e.target.closest && e.target.closest('g.state'); if (g) show(g);
  });
  document.addEventListener('keydown', function(e){
    var g = e.target.closest && e.target.closest('g.state');
    if (g && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); show(g); }
  });
  var form = document.getElementById('try-it');
  if (form) form.addEventListener('submit', function(e){
    e.preventDefault();
    var out = document.getElementById('try-it-result');
    out.textContent = '...';
    fetch(base + '/try', {method: 'POST', headers: {'Content-Type': 'application/json'},
                          body: form.elements['body'].value})
      .then(function(r){return r.text().then(function(t){
        try { t = JSON.stringify(JSON.parse(t), null, 2); } catch (err) {}
        out.textContent = (r.ok ? '' : 'HTTP ' + r.status + '\\n') + t;});})
      .catch(function(err){out.textContent = String(err);});
  });
  if (document.getElementById('status').textContent !== 'RUNNING') return;
  var timer = setInterval(function(){
    fetch(base + '/status.json').then(function(r){return r.json();}).then(function(s){
      document.getElementById('status').textContent = s.status;
      document.getElementById('status').className = 'st-' + s.status;
      var old = document.getElementById('graph');
      if (old) old.outerHTML = s.graph;
      if (s.status !== 'RUNNING') { clearInterval(timer); location.reload(); }
    }).catch(function(){});
  }, 2000);
})();
"""


def _page(title: str, body: str, *, deployment_id: str = "") -> str:
    data = f' data-deployment="{escape(deployment_id)}"' if deployment_id else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)} - trainship console</title>"
            f"<style>{STYLE}</style></head><body{data}>"
            '<header><a href="/">trainship console</a></header>'
            f"<main>{body}</main><script>{SCRIPT}</script></body></html>\n")


def _text(value: Any) -> str:
    return "" if value is None else escape(str(value))


def _status(status: str, *, ident: str = "") -> str:
    attr = f' id="{ident}"' if ident else ""
    return f'<span{attr} class="st-{escape(status)}">{escape(status)}</span>'


def _seconds(started: str | None, stopped: str | None) -> float | None:
    if not started:
        return None
    try:
        start = datetime.fromisoformat(started)
        end = datetime.fromisoformat(stopped) if stopped else None
    except ValueError:
        return None
    return (end - start).total_seconds() if end else None


def duration(started: str | None, stopped: str | None) -> str:
    """'1m 05s', '42s'; '' while running or unknown."""
    seconds = _seconds(started, stopped)
    if seconds is None:
        return ""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _link(url: str | None, text: str | None = None, *, cls: str = "", ident: str = "") -> str:
    """A link for an http(s) or site-relative URL; any other scheme (javascript:, data:)
    is shown as text, never made clickable."""
    if not url or not (url.startswith(("http://", "https://", "/"))
                       and not url.startswith("//")):
        attrs = f' id="{ident}"' if ident else ""
        return f"<span{attrs}>{escape(text or url or '')}</span>" if ident else \
            _text(text or url)
    attrs = (f' class="{cls}"' if cls else "") + (f' id="{ident}"' if ident else "")
    return f'<a{attrs} href="{escape(url)}">{escape(text or url)}</a>'


def _deployment_href(deployment_id: str) -> str:
    return "/deployments/" + urllib.parse.quote(deployment_id, safe="")


def _deployed_by(deployment_id: str | None) -> str:
    return _link(_deployment_href(deployment_id), deployment_id) if deployment_id else ""


def home_page(view: HomeView) -> str:
    rows = "".join(
        f'<tr data-deployment-id="{escape(d.deployment_id)}">'
        f"<td>{_link(_deployment_href(d.deployment_id), d.deployment_id)}</td>"
        f"<td>{_text(d.model_name)}</td><td>{_text(d.version)}</td>"
        f'<td class="status">{_status(d.status)}</td><td>{_text(d.started_at)}</td>'
        f"<td>{escape(duration(d.started_at, d.stopped_at))}</td>"
        f"<td>{_text(d.current_step)}</td></tr>" for d in view.deployments)
    deployments = (
        '<section><h2>Recent deployments</h2><table id="deployments"><thead><tr><th>id</th>'
        "<th>model</th><th>version</th><th>status</th><th>started</th><th>duration</th>"
        f"<th>step</th></tr></thead><tbody>{rows}</tbody></table>"
        + ("" if view.deployments else "<p>No deployments yet: <code>trainship deploy "
                                       "train.py --model-name NAME</code>.</p>")
        + "</section>")
    model_rows = "".join(
        f'<tr data-model="{escape(m.model_name)}"><td>{escape(m.model_name)}</td>'
        f"<td>{_text(m.live_version)}</td>"
        f"<td>{_link(m.inference_url, cls='inference-url')}</td><td>{_text(m.target)}</td>"
        f"<td>{_deployed_by(m.deployment_id)}</td></tr>" for m in view.models)
    models = ('<section><h2>Models</h2><table id="models"><thead><tr><th>model</th>'
              "<th>live version</th><th>inference URL</th><th>target</th><th>deployed by</th>"
              f"</tr></thead><tbody>{model_rows}</tbody></table></section>")
    mlflow = (f'<section><h2>MLflow</h2><a id="mlflow-ui" href="{escape(view.mlflow_url)}">'
              f"MLflow UI</a> ({escape(view.mlflow_url)}): experiments, runs, the model "
              "registry.</section>")
    return _page("Deployments", f"<h1>Deployments</h1>{deployments}{models}{mlflow}")


def graph_svg(definition: Mapping[str, Any], runs: Mapping[str, StateRun]) -> str:
    return graph.render_svg(graph.layout(definition), runs)


def status_json(view: StatusView) -> str:
    return json.dumps({"status": view.status, "graph": graph_svg(view.definition, view.runs)})


def _error_section(error: Mapping[str, Any], failure_logs: str) -> str:
    step = error.get("step")
    return ('<section id="error"><h2>Failed'
            + (f" in {escape(str(step))}" if step else "") + "</h2>"
            f'<p><span class="error-name">{_text(error.get("error"))}</span>: '
            f'<span class="error-message">{_text(error.get("message"))}</span></p>'
            f'<p class="error-help">{_text(error.get("help"))}</p>'
            f'<pre class="error-details">{_text(error.get("details"))}</pre>'
            "<h2>Log lines around the failure</h2>"
            f'<pre id="failure-logs">{escape(failure_logs or "(no build log for this step)")}'
            "</pre></section>")


def _mlflow_section(view: MlflowView | None, mlflow_url: str) -> str:
    if view is None:
        return ('<section id="mlflow"><h2>MLflow</h2><p>No MLflow run for this '
                f'deployment (yet). {_link(mlflow_url, "MLflow UI")}</p></section>')
    metrics = "".join(f"<tr><td>{escape(k)}</td><td>{v:g}</td></tr>"
                      for k, v in sorted(view.metrics.items()))
    params = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
                     for k, v in sorted(view.params.items()))
    run = (f'<a class="mlflow-run" href="{escape(view.run_url)}">{escape(view.run_id or "")}</a>'
           if view.run_url else _text(view.run_id))
    return ('<section id="mlflow"><h2>MLflow</h2>'
            f"<p>Run: {run}</p>"
            + (f'<p>Model version: <span class="model-version">'
               f"{_link(view.version_url, f'{view.model_name} v{view.model_version}')}"
               "</span></p>" if view.model_version else
               "<p>No model version registered by this deployment.</p>")
            + '<table class="metrics"><thead><tr><th>metric</th><th>value</th></tr></thead>'
            f"<tbody>{metrics}</tbody></table>"
            + (f'<table class="params"><thead><tr><th>param</th><th>value</th></tr></thead>'
               f"<tbody>{params}</tbody></table>" if params else "")
            + "</section>")


def _try_section(url: str, example: str | None, deployment_id: str) -> str:
    # action: the form works without the page's script too (the script posts the same)
    action = escape(_deployment_href(deployment_id) + "/try")
    return ('<section id="inference"><h2>Inference</h2>'
            f'<p>URL: {_link(url, ident="inference-url")} '
            f"(POST {escape(url.rstrip('/'))}/invocations)</p>"
            f'<form id="try-it" method="post" action="{action}">'
            "<label>Request body (JSON, MLflow's scoring "
            f'protocol)<textarea name="body">{escape(example or "")}</textarea></label>'
            '<button type="submit">Try it</button></form>'
            '<pre id="try-it-result"></pre></section>')


def _cost_section(cost: Mapping[str, Any]) -> str:
    rows = [("state transitions", str(cost.get("state_transitions")),
             cost.get("state_transitions_usd"))]
    rows += [(f"Lambda {f.get('function')}", f"{f.get('invocations')} calls, "
              f"{f.get('gb_seconds')} GB-s", f.get("usd"))
             for f in cost.get("lambda_functions") or []]
    rows += [(f"CodeBuild {b.get('step')}", f"{b.get('seconds')} s", b.get("usd"))
             for b in cost.get("builds") or []]
    body = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td><td>{_usd(c)}</td></tr>"
                   for a, b, c in rows)
    so_far = "" if cost.get("final") else " so far"
    return ('<section id="cost"><h2>Cost receipt</h2>'
            f"<p>{_usd(cost.get('total_usd'))} at AWS list prices{so_far} "
            f"({_text(cost.get('region'))}, prices as of {_text(cost.get('prices_as_of'))})</p>"
            f"<table><tbody>{body}</tbody></table>"
            + (f"<p>not counted: {escape('; '.join(cost.get('excludes') or []))}</p>"
               if cost.get("excludes") else "")
            + "</section>")


def _usd(value: Any) -> str:
    if not isinstance(value, int | float):
        return "(no price)"
    return f"${value:.2e}" if 0 < value < 0.000001 else f"${value:.6f}"


def deployment_page(view: DeploymentView) -> str:
    record = view.record
    deployment_id = str(record["deployment_id"])
    status = str(record["status"])
    result = record.get("result") or {}
    took = duration(record.get("started_at"), record.get("stopped_at"))
    header = (f"<h1>{escape(deployment_id)}</h1>"
              f"<p>Status: {_status(status, ident='status')}"
              + (f" &middot; model {escape(view.model_name)}" if view.model_name else "")
              + (f" &middot; version {_text(result.get('model_version'))}"
                 if result.get("model_version") else "")
              + f" &middot; started {_text(record.get('started_at'))}"
              + (f" &middot; took {escape(took)}" if took else "")
              + (f" &middot; at {_text(record.get('current_step'))}"
                 if status == "RUNNING" and record.get("current_step") else "")
              + "</p>")
    parts = [header]
    error = record.get("error")
    if error:
        parts.append(_error_section(error, view.failure_logs))
    parts.append('<section><h2>Execution</h2><div class="graph-wrap"><div>'
                 f"{graph_svg(view.definition, view.runs)}</div>"
                 '<section id="state-detail"><p>Click a state for its input, output or '
                 "error.</p></section></div></section>")
    if status == "SUCCEEDED" and result.get("inference_url"):
        parts.append(_try_section(str(result["inference_url"]), view.input_example,
                                  str(record.get("deployment_id") or "")))
    parts.append(_mlflow_section(view.mlflow, view.mlflow_url))
    logs = "".join(
        f'<h3>{escape(step)}</h3><pre id="logs-{escape(step)}">'
        f'{escape(view.logs.get(step) or "(no build log)")}</pre>'
        for step in ("TrainModel", "BuildImage"))
    parts.append(f'<section id="logs"><h2>Build logs (tail)</h2>{logs}</section>')
    if record.get("cost"):
        parts.append(_cost_section(record["cost"]))
    return _page(deployment_id, "".join(parts), deployment_id=deployment_id)


def state_fragment(state: str, details: Sequence[StateDetail] | None) -> str:
    """GET /deployments/{id}/states/{Name}: each entry of the state, in order (None: the
    execution's history is gone, e.g. the local stack restarted since)."""
    if details is None:
        return (f"<h2>{escape(state)}</h2><p>This execution's history is no longer "
                "available (the local stack keeps it in memory until it stops); the "
                "deployment's record above still shows its steps.</p>")
    if not details:
        return f"<h2>{escape(state)}</h2><p>Not reached in this execution.</p>"
    parts = [f"<h2>{escape(state)}</h2>"]
    for i, detail in enumerate(details, 1):
        entered, exited = detail.entered_at, detail.exited_at
        if len(details) > 1:
            parts.append(f"<h3>entry {i}</h3>")
        parts.append(f"<p>entered {_text(entered)}"
                     + (f", exited {_text(exited)}" if exited else "") + "</p>")
        error, cause = detail.error, detail.cause
        if error or cause:
            parts.append(f'<pre class="state-error">{_text(error)}\n{_pretty(cause)}</pre>')
        if detail.input is not None:
            parts.append(f'<h3>input</h3><pre class="state-input">{_pretty(detail.input)}</pre>')
        if detail.output is not None:
            parts.append(f'<h3>output</h3><pre class="state-output">'
                         f"{_pretty(detail.output)}</pre>")
    return "".join(parts)


def _pretty(text: Any) -> str:
    """JSON text indented (escaped); other text as it is."""
    if text is None:
        return ""
    try:
        return escape(json.dumps(json.loads(str(text)), indent=2))
    except ValueError:
        return escape(str(text))


def not_found_page(what: str) -> str:
    return _page("Not found", f"<h1>Not found</h1><p>{escape(what)}</p>"
                              '<p><a href="/">All deployments</a></p>')


def error_page(message: str) -> str:
    return _page("Error", f"<h1>The console could not load this page</h1>"
                          f"<p>{escape(message)}</p>")
