"""PLACEHOLDER (console-pages' branch only): the contract's signatures of
trainship.console.graph, so that the pages can be rendered and tested before helper
console-graph's module is merged; that module replaces this file whole."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["succeeded", "failed", "running", "caught", "not_reached"]


@dataclass(frozen=True)
class StateRun:
    status: Status
    entered: int = 1
    seconds: float | None = None
    retries: int = 0


@dataclass(frozen=True)
class Graph:
    nodes: list[str] = field(default_factory=list)


def layout(definition: Mapping[str, Any]) -> Graph:
    return Graph(list(definition.get("States", {})))


def render_svg(graph: Graph, runs: Mapping[str, StateRun]) -> str:
    parts = ['<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="240" '
             f'height="{30 * len(graph.nodes) + 10}">']
    for i, name in enumerate(graph.nodes):
        status = runs[name].status if name in runs else "not_reached"
        parts.append(f'<g class="state state-{status}" data-state="{html.escape(name)}" '
                     f'data-status="{status}" tabindex="0"><rect x="5" y="{5 + 30 * i}" '
                     f'width="230" height="24"/><text x="10" y="{22 + 30 * i}">'
                     f"{html.escape(name)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)
