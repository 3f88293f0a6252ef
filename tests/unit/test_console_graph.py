"""The state machine's graph, laid out from the real ASL file: every state placed without
overlaps, every transition drawn, the loops as back edges, the failure path in a column
at the side; and its SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import pytest

from trainship.console.graph import (
    Edge,
    Graph,
    Node,
    StateRun,
    condition_text,
    duration_text,
    layout,
    render_svg,
)

ASL = Path(__file__).resolve().parents[2] / "infra" / "statemachine" / "deploy.asl.json"
SVG = "{http://www.w3.org/2000/svg}"
FAILURE_PATH = {"RecordFailure", "DeploymentFailed", "ResumeFailedStep"}


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASL.read_text())
    return loaded


@pytest.fixture(scope="module")
def graph(definition: dict[str, Any]) -> Graph:
    return layout(definition)


def asl_transitions(definition: dict[str, Any]) -> set[tuple[str, str]]:
    """Every Next, Default, Choices[].Next and Catch[].Next of the definition."""
    found = set()
    for name, state in definition["States"].items():
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])]
        targets += [c["Next"] for c in state.get("Catch", [])]
        found |= {(name, t) for t in targets if t}
    return found


def segments(edge: Edge) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    return list(pairwise(edge.points))


def crosses(node: Node, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the axis-parallel segment a-b passes through the inside of ``node``."""
    x1, x2 = sorted((a[0], b[0]))
    y1, y2 = sorted((a[1], b[1]))
    return x1 < node.x + node.w - 1 and x2 > node.x + 1 and y1 < node.y + node.h - 1 \
        and y2 > node.y + 1


def on_border(node: Node, point: tuple[float, float]) -> bool:
    x, y = point
    inside_x = node.x - 0.5 <= x <= node.x + node.w + 0.5
    inside_y = node.y - 0.5 <= y <= node.y + node.h + 0.5
    return inside_x and inside_y and (x in (node.x, node.x + node.w)
                                      or y in (node.y, node.y + node.h))


def test_every_state_is_placed_once_and_none_overlap(definition: dict[str, Any],
                                                     graph: Graph) -> None:
    assert sorted(n.name for n in graph.nodes) == sorted(definition["States"])
    for a, b in combinations(graph.nodes, 2):
        apart = (a.x + a.w + 8 <= b.x or b.x + b.w + 8 <= a.x
                 or a.y + a.h + 8 <= b.y or b.y + b.h + 8 <= a.y)
        assert apart, (a, b)
    for node in graph.nodes:
        assert node.type == definition["States"][node.name]["Type"]
        assert 0 <= node.x and node.x + node.w <= graph.width
        assert 0 <= node.y and node.y + node.h <= graph.height


def test_every_transition_of_the_definition_is_an_edge(definition: dict[str, Any],
                                                       graph: Graph) -> None:
    assert {(e.source, e.target) for e in graph.edges} == asl_transitions(definition)
    catches = {(n, c["Next"]) for n, s in definition["States"].items()
               for c in s.get("Catch", [])}
    assert {(e.source, e.target) for e in graph.edges if e.kind == "catch"} == catches
    assert all(e.label == "Catch" for e in graph.edges if e.kind == "catch")
    route = {e.target: e.label for e in graph.edges if e.source == "Route"}
    assert route == {"PrepareRollback": 'action = "rollback"', "RemoveModel":
                     'action = "delete"', "RotateToken": 'action = "rotate-token"',
                     "ValidateRequest": "Default"}


def test_edges_run_orthogonally_from_source_to_target_around_other_states(
        graph: Graph) -> None:
    nodes = {n.name: n for n in graph.nodes}
    for edge in graph.edges:
        assert len(edge.points) >= 2
        assert on_border(nodes[edge.source], edge.points[0]), edge
        assert on_border(nodes[edge.target], edge.points[-1]), edge
        for a, b in segments(edge):
            assert a[0] == b[0] or a[1] == b[1], edge  # horizontal or vertical
            for node in graph.nodes:
                if node.name not in (edge.source, edge.target):
                    assert not crosses(node, a, b), (edge.source, edge.target, node.name)
        if edge.label:
            assert edge.label_at is not None


def test_no_two_unrelated_edges_run_along_each_other(graph: Graph) -> None:
    """Pieces of two edges may overlap only where one state fans out or one merges in."""
    def overlap(s: tuple[tuple[float, float], tuple[float, float]],
                t: tuple[tuple[float, float], tuple[float, float]]) -> bool:
        (a, b), (c, d) = s, t
        if a[1] == b[1] == c[1] == d[1]:  # horizontal, same y
            return min(max(a[0], b[0]), max(c[0], d[0])) - max(min(a[0], b[0]),
                                                               min(c[0], d[0])) > 1
        if a[0] == b[0] == c[0] == d[0]:
            return min(max(a[1], b[1]), max(c[1], d[1])) - max(min(a[1], b[1]),
                                                               min(c[1], d[1])) > 1
        return False

    for e, f in combinations(graph.edges, 2):
        if e.source == f.source or e.target == f.target:
            continue
        for s in segments(e):
            for t in segments(f):
                assert not overlap(s, t), (e.source, e.target, f.source, f.target)


def test_the_loops_are_back_edges_and_the_rest_runs_down(graph: Graph) -> None:
    nodes = {n.name: n for n in graph.nodes}
    back = {(e.source, e.target) for e in graph.edges if e.back}
    main_back = {(s, t) for s, t in back if s != "ResumeFailedStep"}
    assert main_back == {("IsRolloutDone", "WaitForRollout"), ("CanaryVerdict", "ShiftTraffic")}
    assert {t for s, t in back if s == "ResumeFailedStep"} == {
        "TrainModel", "RegisterModel", "BuildImage", "DeployModel", "RemoveModel",
        "PrepareRollback", "RotateToken"}
    for edge in graph.edges:
        s, t = nodes[edge.source], nodes[edge.target]
        if edge.back:
            assert t.y < s.y
        elif edge.kind != "catch" and t.name not in FAILURE_PATH \
                and not t.name.endswith("Caught"):
            assert t.y > s.y, edge  # top-down
    # the happy path straight down one column, StartAt on top
    spine = ["Route", "ValidateRequest", "TrainModel", "RegisterModel", "BuildImage",
             "DeployModel", "WaitForRollout", "CheckRollout", "IsRolloutDone",
             "SmokeTestModel", "ChooseRollout", "PromoteModel", "DeploymentSucceeded"]
    assert len({nodes[n].x for n in spine}) == 1
    assert [nodes[n].y for n in spine] == sorted(nodes[n].y for n in spine)
    assert nodes["Route"].y == min(n.y for n in graph.nodes)


def test_choice_branches_sit_side_by_side(graph: Graph) -> None:
    nodes = {n.name: n for n in graph.nodes}
    branches = [nodes[n] for n in ("PrepareRollback", "RemoveModel", "RotateToken",
                                   "ValidateRequest")]
    assert len({n.y for n in branches}) == 1
    assert [n.x for n in branches] == sorted(n.x for n in branches)  # in the ASL's order
    assert nodes["CanaryVerdictUnknown"].y == nodes["PromoteModel"].y
    assert nodes["CanaryVerdictUnknown"].x != nodes["PromoteModel"].x


def test_the_failure_path_is_a_column_at_the_side(definition: dict[str, Any],
                                                  graph: Graph) -> None:
    side = [n for n in graph.nodes if n.name.endswith("Caught") or n.name in FAILURE_PATH]
    assert len(side) == 16
    assert len({n.x for n in side}) == 1
    main = [n for n in graph.nodes if n not in side]
    assert min(n.x for n in side) > max(n.x + n.w for n in main)
    nodes = {n.name: n for n in graph.nodes}
    # the failure path runs down: RecordFailure, DeploymentFailed, ResumeFailedStep last
    caught = [n for n in side if n.name.endswith("Caught")]
    assert nodes["RecordFailure"].y > max(n.y for n in caught)
    assert nodes["RecordFailure"].y < nodes["DeploymentFailed"].y \
        < nodes["ResumeFailedStep"].y
    # a Catch target sits beside its state when nothing is in the way
    assert nodes["BuildImageCaught"].cy == nodes["BuildImage"].cy


def test_the_layout_is_deterministic(definition: dict[str, Any], graph: Graph) -> None:
    assert layout(json.loads(json.dumps(definition))) == graph


SMALL = {
    "StartAt": "Start",
    "States": {
        "Start": {"Type": "Pass", "Next": "Pick"},
        "Pick": {"Type": "Choice", "Choices": [
            {"Variable": "$.n", "NumericGreaterThan": 3, "Next": "Pause"},
            {"Not": {"Variable": "$.ok", "BooleanEquals": True}, "Next": "Boom"}],
            "Default": "Work"},
        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Work"},
        "Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Boom"}],
                 "Next": "Done <&>"},
        "Boom": {"Type": "Fail", "Error": "X"},
        "Done <&>": {"Type": "Succeed"},
    },
}


def test_every_state_type_is_laid_out() -> None:
    graph = layout(SMALL)
    assert {n.type for n in graph.nodes} == {"Pass", "Choice", "Wait", "Task", "Fail",
                                             "Succeed"}
    assert {(e.source, e.target) for e in graph.edges} == asl_transitions(SMALL)
    labels = {e.target: e.label for e in graph.edges if e.source == "Pick"}
    assert labels == {"Pause": "n > 3", "Boom": "not ok = true", "Work": "Default"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # our own output


def test_the_svg_colours_each_state_by_its_run(graph: Graph) -> None:
    runs = {"Route": StateRun("succeeded", 1, 0.02),
            "CheckRollout": StateRun("succeeded", 3, 123.4, 2),
            "SmokeTestModel": StateRun("failed", 1, 1.25),
            "SmokeTestModelCaught": StateRun("caught"),
            "PromoteModel": StateRun("running", 1, None)}
    svg = render_svg(graph, runs)
    root = parse(svg)
    assert root.tag == f"{SVG}svg" and root.get("id") == "graph"
    assert root.get("viewBox") == f"0 0 {graph.width:g} {graph.height:g}"
    assert root.find(f"{SVG}style") is not None
    assert root.find(f".//{SVG}marker") is not None
    states = {g.get("data-state"): g for g in root.iter(f"{SVG}g")
              if "state" in (g.get("class") or "").split()}
    assert set(states) == {n.name for n in graph.nodes}
    for name, g in states.items():
        status = runs[name].status if name in runs else "not_reached"
        assert g.get("data-status") == status
        assert f"state-{status}" in (g.get("class") or "").split()
        assert g.get("tabindex") == "0"
        assert g.find(f"{SVG}rect") is not None
    texts = {name: [t.text for t in g.iter(f"{SVG}text")] for name, g in states.items()}
    assert texts["CheckRollout"] == ["CheckRollout", "2 min 3 s \u00b7 \u00d73 \u00b7 2 retries"]
    assert texts["SmokeTestModel"] == ["SmokeTestModel", "1.2 s"]
    assert texts["DeployModel"] == ["DeployModel"]
    paths = [p for p in root.iter(f"{SVG}path") if "edge" in (p.get("class") or "")]
    assert len(paths) == len(graph.edges)
    assert all(p.get("marker-end", "").startswith("url(#graph-arrow") for p in paths)
    # self-contained: no reference out of the document
    assert "href" not in svg and "url(http" not in svg and "@import" not in svg


def test_the_svg_escapes_names() -> None:
    svg = render_svg(layout(SMALL), {"Done <&>": StateRun("succeeded")})
    root = parse(svg)
    done = [g for g in root.iter(f"{SVG}g") if g.get("data-state") == "Done <&>"]
    assert len(done) == 1 and done[0].get("data-status") == "succeeded"
    assert "Done &lt;&amp;&gt;" in svg


@pytest.mark.parametrize(("seconds", "text"), [
    (None, ""), (0.04, "< 0.1 s"), (0.05, "0.1 s"), (1.25, "1.2 s"), (9.96, "10.0 s"),
    (12.4, "12 s"),
    (60, "1 min"), (123, "2 min 3 s"), (3600, "1 h"), (3725, "1 h 2 min")])
def test_durations_read_as_people_say_them(seconds: float | None, text: str) -> None:
    assert duration_text(seconds) == text


def test_conditions_are_shortened() -> None:
    assert condition_text({"Variable": "$.canary", "IsPresent": True}) == "canary present"
    assert condition_text({"Variable": "$.a", "StringEquals": "x" * 40}) == \
        'a = "' + "x" * 26 + "…"


def test_a_loop_to_the_start_and_an_unreachable_state_are_drawn_too() -> None:
    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "r", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.again", "BooleanEquals": True,
                                             "Next": "A"}], "Default": "C"},
        "C": {"Type": "Succeed"},
        "Orphan": {"Type": "Pass", "Next": "C"},
    }}
    graph = layout(definition)
    assert {(e.source, e.target) for e in graph.edges} == asl_transitions(definition)
    back = {(e.source, e.target) for e in graph.edges if e.back}
    assert ("B", "A") in back and ("A", "B") not in back and ("B", "C") not in back
    nodes = {n.name: n for n in graph.nodes}
    assert nodes["A"].y < nodes["B"].y < nodes["C"].y
    assert nodes["Orphan"].x > nodes["C"].x  # beside, with what StartAt does not reach
    for a, b in combinations(graph.nodes, 2):
        assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
