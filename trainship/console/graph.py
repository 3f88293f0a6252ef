"""The state machine drawn as the Step Functions console draws it: top-down from StartAt,
Choice branches side by side, loops as back edges curving at the side, the failure path
(the Catch targets and what follows them) in a column to the right. Pure functions, no
I/O: ``layout(definition)`` places states and routes edges; ``render_svg(graph, runs)``
draws them coloured by how each state went in one execution.

Layout, in short: the states reachable from StartAt without a Catch are ranked by their
longest path from StartAt over forward edges (back edges found by a depth-first search),
then packed as a tree: each state continues below the predecessor that ranks it, the
deepest branch keeps its parent's column, the other branches (and lanes for edges that
skip rows) go to the left, as far as needed not to collide. Edges run orthogonally:
horizontal pieces in the gaps between rows (each on its own slot when pieces of
different edges would overlap), vertical pieces in columns or in lanes between them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["succeeded", "failed", "running", "caught", "not_reached"]
EdgeKind = Literal["next", "choice", "default", "catch"]
Point = tuple[float, float]


@dataclass(frozen=True)
class StateRun:
    """How one state went in one execution."""

    status: Status
    entered: int = 1  # times entered (a loop enters a state more than once)
    seconds: float | None = None  # total time in the state, over every entry
    retries: int = 0  # Task attempts beyond the first of each entry


@dataclass(frozen=True)
class Node:
    name: str
    type: str  # the ASL state type: Task, Choice, Wait, Pass, Fail, Succeed, ...
    x: float  # top-left corner
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    label: str | None
    points: tuple[Point, ...]  # an orthogonal polyline, source to target
    back: bool = False  # drawn upwards (a loop, or a redrive's resume)
    label_at: Point | None = None
    label_anchor: Literal["start", "end"] = "start"


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: float
    height: float

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


# --- the definition's transitions -------------------------------------------------------

def _operand(rule: Mapping[str, Any]) -> str:
    """One comparison of a Choice rule, shortened: ``action = "rollback"``."""
    variable = str(rule.get("Variable", "")).removeprefix("$.")
    for key, value in rule.items():
        if key in ("Variable", "Next"):
            continue
        shown = f'"{value}"' if isinstance(value, str) else str(value).lower()
        if key.endswith("Path"):
            shown = str(value).removeprefix("$.")
            key = key.removesuffix("Path")
        if key == "IsPresent":
            return f"{variable} present" if value else f"no {variable}"
        if key.startswith("Is"):
            return f"{variable} {key[2:].lower()}" if value else f"{variable} not {key[2:]}"
        for suffix, op in (("GreaterThanEquals", ">="), ("LessThanEquals", "<="),
                           ("GreaterThan", ">"), ("LessThan", "<"), ("Equals", "="),
                           ("Matches", "~")):
            if key.endswith(suffix):
                return f"{variable} {op} {shown}"
        return f"{variable} {key} {shown}"
    return variable


def condition_text(rule: Mapping[str, Any], limit: int = 32) -> str:
    """A Choice rule as a short label; an ``IsPresent`` guard beside a comparison of the
    same variable is left out (``action = "rollback"``)."""
    if "And" in rule or "Or" in rule:
        parts = list(rule.get("And") or rule.get("Or") or [])
        compared = {p.get("Variable") for p in parts if "IsPresent" not in p}
        parts = [p for p in parts if not ("IsPresent" in p and p.get("Variable") in compared)]
        joiner = " and " if "And" in rule else " or "
        text = joiner.join(condition_text(p, limit=1000) for p in parts)
    elif "Not" in rule:
        text = f"not {condition_text(rule['Not'], limit=1000)}"
    elif "Condition" in rule:  # JSONata
        text = str(rule["Condition"]).strip("{} ")
    else:
        text = _operand(rule)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def transitions(definition: Mapping[str, Any]) -> list[tuple[str, str, EdgeKind, str | None]]:
    """Every transition of the definition, in its order: (source, target, kind, label)
    for each Choices[].Next, Default, Next and Catch[].Next."""
    found: list[tuple[str, str, EdgeKind, str | None]] = []
    for name, state in definition["States"].items():
        for rule in state.get("Choices", []):
            found.append((name, rule["Next"], "choice", condition_text(rule)))
        if "Default" in state:
            found.append((name, state["Default"], "default", "Default"))
        if "Next" in state:
            found.append((name, state["Next"], "next", None))
        for catcher in state.get("Catch", []):
            found.append((name, catcher["Next"], "catch", "Catch"))
    return found


# --- layout ---------------------------------------------------------------------------

NODE_W = 188.0
NODE_H = 54.0
SIDE_H = 42.0  # the failure column's states
COL_GAP = 64.0
ROW_GAP = 64.0
COL_PITCH = NODE_W + COL_GAP
ROW_PITCH = NODE_H + ROW_GAP
LANE = 8.0  # between parallel lanes
MARGIN = 24.0
SOURCE_SLOTS = (16.0, 24.0, 32.0, 8.0, 40.0, 48.0, 56.0)
TARGET_SLOTS = (48.0, 40.0, 32.0, 56.0, 24.0, 16.0, 8.0)
MIDDLE_SLOTS = (28.0, 36.0, 20.0, 44.0, 12.0, 52.0, 32.0, 24.0, 40.0)


@dataclass
class _Gaps:
    """Slots for horizontal pieces in the gaps between rows: pieces of edges that share a
    key (one source fanning out, or one target merging) may share a slot; others get a
    slot of their own where their x ranges overlap."""

    used: dict[int, list[tuple[float, float, float, object]]] = field(default_factory=dict)

    def slot(self, gap: int, x1: float, x2: float, key: object,
             prefer: Sequence[float]) -> float:
        lo, hi = min(x1, x2) - 6, max(x1, x2) + 6
        taken = self.used.setdefault(gap, [])
        candidates = [*prefer, *(float(o) for o in range(4, int(ROW_GAP), 4))]
        for offset in candidates:
            if all(k == key or off != offset or b < lo or a > hi for a, b, off, k in taken):
                taken.append((lo, hi, offset, key))
                return offset
        taken.append((lo, hi, prefer[0], key))
        return prefer[0]


def _row_top(rank: int) -> float:
    return rank * ROW_PITCH


def _gap_y(rank: int, offset: float) -> float:
    """A y in the gap below row ``rank`` (rank -1: above the first row)."""
    return _row_top(rank) + NODE_H + offset


def _reach(start: str, succ: Mapping[str, list[str]]) -> list[str]:
    seen: list[str] = []
    stack = [start]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.append(node)
        stack.extend(reversed(succ.get(node, [])))
    return seen


def _dfs(start: str, succ: Mapping[str, list[str]]) -> tuple[list[str], set[tuple[str, str]]]:
    """Postorder and back edges of a depth-first search from ``start``."""
    post: list[str] = []
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str) -> None:
        state[node] = 1
        for nxt in succ.get(node, []):
            if state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                visit(nxt)
        state[node] = 2
        post.append(node)

    visit(start)
    return post, back


Item = tuple[str, str, str]  # ("node", name, "") or ("lane", source, target)


def _pack(root: str, children: Mapping[str, list[Item]], rank: Mapping[str, int]
          ) -> tuple[dict[Item, int], set[tuple[int, int]]]:
    """Columns (relative to the root's) of a subtree: the deepest child keeps the column,
    the others go left, each as near as it fits."""
    cols: dict[Item, int] = {("node", root, ""): 0}
    cells = {(0, rank[root])}
    subtrees: list[tuple[dict[Item, int], set[tuple[int, int]]]] = []
    for item in children.get(root, []):
        if item[0] == "lane":
            subtrees.append(({item: 0}, {(0, r) for r in range(rank[item[1]] + 1,
                                                               rank[item[2]] + 1)}))
        else:
            subtrees.append(_pack(item[1], children, rank))
    if not subtrees:
        return cols, cells
    depth = [max(r for _, r in sub_cells) for _, sub_cells in subtrees]
    keep = depth.index(max(depth))
    order = [keep] + [i for i in reversed(range(len(subtrees))) if i != keep]
    for index in order:
        sub_cols, sub_cells = subtrees[index]
        shift = 0
        while any((c + shift, r) in cells for c, r in sub_cells):
            shift -= 1
        cells |= {(c + shift, r) for c, r in sub_cells}
        cols.update({k: c + shift for k, c in sub_cols.items()})
    return cols, cells


def layout(definition: Mapping[str, Any]) -> Graph:
    """Place every state of ``definition`` (an ASL document) and route every transition."""
    states: Mapping[str, Mapping[str, Any]] = definition["States"]
    start: str = definition["StartAt"]
    every = transitions(definition)
    succ: dict[str, list[str]] = {}
    for src, dst, kind, _ in every:
        if kind != "catch" and dst not in succ.setdefault(src, []):
            succ[src].append(dst)
    # the main graph: what StartAt reaches without entering a Catch target; the rest is
    # the failure path (the Catch targets and what only they reach)
    caught = {d for _, d, k, _ in every if k == "catch"}
    main = _reach(start, {n: [d for d in ds if d not in caught] for n, ds in succ.items()})
    main_set = set(main)
    main_succ = {n: [d for d in succ.get(n, []) if d in main_set] for n in main}
    post, back = _dfs(start, main_succ)
    topo = list(reversed(post))
    rank = dict.fromkeys(topo, 0)
    for node in topo:
        for nxt in main_succ[node]:
            if (node, nxt) not in back:
                rank[nxt] = max(rank[nxt], rank[node] + 1)
    primary: dict[str, str] = {}
    for node in topo:
        for nxt in main_succ[node]:
            if (node, nxt) not in back and rank[nxt] == rank[node] + 1:
                primary.setdefault(nxt, node)
    children: dict[str, list[Item]] = {}
    for node in topo:
        for nxt in main_succ[node]:
            if (node, nxt) in back:
                continue
            if primary.get(nxt) == node:
                children.setdefault(node, []).append(("node", nxt, ""))
            elif rank[nxt] - rank[node] > 1:
                children.setdefault(node, []).append(("lane", node, nxt))
    cols, cells = _pack(start, children, rank)
    shift = -min(c for c, _ in cells)
    col = {k: c + shift for k, c in cols.items()}
    max_col = max(c for c, _ in cells) + shift

    nodes: dict[str, Node] = {}
    for name in main:
        c = col[("node", name, "")]
        nodes[name] = Node(name, str(states[name].get("Type", "")), c * COL_PITCH,
                           _row_top(rank[name]), NODE_W, NODE_H)

    # the failure column: states only a Catch reaches, beside the states that lead there
    side = [n for n in states if n not in main_set]
    into_side = [(s, d, k, lbl) for s, d, k, lbl in every if s in main_set and d not in main_set]
    band = MARGIN * 2 + LANE * max(len(into_side), 1)
    side_x = (max_col + 1) * COL_PITCH - COL_GAP + band

    def side_key(name: str) -> tuple[int, float, int]:
        ranks = [rank[s] for s, d, _, _ in into_side if d == name]
        index = list(states).index(name)
        return (0, min(ranks), index) if ranks else (1, 0.0, index)

    side_order = sorted(side, key=side_key)
    # those not entered from the main graph follow in the order they are reached
    fed = [n for n in side_order if side_key(n)[0] == 0]
    rest = [n for n in _reach_many(fed, succ) if n not in fed and n in side]
    rest += [n for n in side_order if n not in fed and n not in rest]
    bottom = -SIDE_H
    for name in fed:
        ranks = [rank[s] for s, d, _, _ in into_side if d == name]
        want = _row_top(min(ranks)) + (NODE_H - SIDE_H) / 2
        y = max(want, bottom + 12)
        nodes[name] = Node(name, str(states[name].get("Type", "")), side_x, y, NODE_W, SIDE_H)
        bottom = y + SIDE_H
    for name in rest:
        y = bottom + ROW_GAP * 0.75
        nodes[name] = Node(name, str(states[name].get("Type", "")), side_x, y, NODE_W, SIDE_H)
        bottom = y + SIDE_H

    gaps = _Gaps()
    edges: list[Edge] = []
    routed: dict[int, Edge] = {}

    # forward edges of the main graph
    for index, (src, dst, kind, label) in enumerate(every):
        if src not in main_set or dst not in main_set or (src, dst) in back:
            continue
        s, t = nodes[src], nodes[dst]
        pts: list[Point] = [(s.cx, s.y + s.h)]
        lane_item: Item = ("lane", src, dst)
        if lane_item in col and primary.get(dst) != src:
            lx = col[lane_item] * COL_PITCH + NODE_W / 2
            if lx != s.cx:
                y1 = _gap_y(rank[src], gaps.slot(rank[src], s.cx, lx, ("src", src),
                                                 SOURCE_SLOTS))
                pts += [(s.cx, y1), (lx, y1)]
            if lx != t.cx:
                y2 = _gap_y(rank[dst] - 1, gaps.slot(rank[dst] - 1, lx, t.cx, ("dst", dst),
                                                     TARGET_SLOTS))
                pts += [(lx, y2), (t.cx, y2)]
        elif s.cx != t.cx:
            y1 = _gap_y(rank[src], gaps.slot(rank[src], s.cx, t.cx, ("src", src),
                                             SOURCE_SLOTS))
            pts += [(s.cx, y1), (t.cx, y1)]
        pts.append((t.cx, t.y))
        label_at: Point | None = None
        if label:
            first = pts[2] if len(pts) > 2 else pts[0]
            label_at = (first[0] + 5, first[1] + 14)
        routed[index] = Edge(src, dst, kind, label, _clean(pts), False, label_at)

    # back edges of the main graph: out of the left side, up a lane, into the left side
    lanes: dict[int, list[tuple[float, float, float]]] = {}
    for index, (src, dst, kind, label) in enumerate(every):
        if (src, dst) not in back:
            continue
        s, t = nodes[src], nodes[dst]
        left = min(s.x, t.x)
        lo, hi = t.cy, s.cy
        taken = lanes.setdefault(round(left), [])
        k = 0
        while any(kk == k and not (b < lo or a > hi) for a, b, kk in taken):
            k += 1
        taken.append((lo, hi, k))
        lx = left - 16 - LANE * k
        pts = [(s.x, s.cy), (lx, s.cy), (lx, t.cy), (t.x, t.cy)]
        label_at = (s.x - 4, s.cy - 6) if label else None
        routed[index] = Edge(src, dst, kind, label, tuple(pts), True, label_at, "end")

    # edges into the failure column: lanes in the band left of it, the highest edge on the
    # lane nearest the column (then no two of them cross)
    main_right = max_col * COL_PITCH + NODE_W
    right_at: dict[int, int] = {}
    for c, r in cells:
        right_at[r] = max(right_at.get(r, c + shift), c + shift)
    exits: list[tuple[float, int, list[Point], Point | None, Literal["start", "end"]]] = []
    for index, (src, dst, _, label) in enumerate(every):
        if src not in main_set or dst in main_set:
            continue
        s = nodes[src]
        if col[("node", src, "")] == right_at[rank[src]]:
            pts = [(s.x + s.w, s.cy)]
            label_at = (s.x + s.w + 4, s.cy - 5)
        else:
            ex = s.cx + s.w / 4
            y = _gap_y(rank[src], gaps.slot(rank[src], ex, main_right + band,
                                            ("catch", src, dst), MIDDLE_SLOTS))
            pts = [(ex, s.y + s.h), (ex, y)]
            label_at = (ex + 4, s.y + s.h + 12)
        exits.append((pts[-1][1], index, pts, label_at if label else None, "start"))
    exits.sort()
    for order, (_, index, pts, label_at, anchor) in enumerate(exits):
        src, dst, kind, label = every[index]
        t = nodes[dst]
        lx = side_x - MARGIN / 2 - LANE * order
        pts = [*pts, (lx, pts[-1][1]), (lx, t.cy), (t.x, t.cy)]
        routed[index] = Edge(src, dst, kind, label, _clean(pts), False, label_at, anchor)

    # within the failure column: straight down to the next one, else a bus on its right
    side_list = fed + rest
    bus: dict[str, float] = {}
    for index, (src, dst, kind, label) in enumerate(every):
        if src in main_set or dst in main_set:
            continue
        s, t = nodes[src], nodes[dst]
        if side_list.index(dst) == side_list.index(src) + 1 and len(
                [1 for a, b, _, _ in every if b == dst and a not in main_set]) == 1:
            pts = [(s.cx, s.y + s.h), (t.cx, t.y)]
        else:
            bx = bus.setdefault(dst, side_x + NODE_W + MARGIN / 2 + LANE * len(bus))
            pts = [(s.x + s.w, s.cy), (bx, s.cy), (bx, t.cy), (t.x + t.w, t.cy)]
        label_at = (pts[0][0] + 5, pts[0][1] + 14) if label else None
        routed[index] = Edge(src, dst, kind, label, _clean(pts), False, label_at)

    # from the failure column back into the main graph (a redrive's resume): under every
    # state, up lanes left of every column, into the target from the gap above it; the
    # highest target on the leftmost lane
    lowest = max(n.y + n.h for n in nodes.values())
    ups = sorted(((rank[dst], list(states).index(dst), i) for i, (src, dst, _, _)
                  in enumerate(every) if src not in main_set and dst in main_set))
    for order, (_, _, index) in enumerate(ups):
        src, dst, kind, label = every[index]
        s, t = nodes[src], nodes[dst]
        lx = -MARGIN - LANE * order
        under = lowest + MARGIN
        entry = t.cx - NODE_W / 4
        gap = rank[dst] - 1
        y = _gap_y(gap, gaps.slot(gap, lx, entry, ("resume", dst), MIDDLE_SLOTS))
        pts = [(s.cx, s.y + s.h), (s.cx, under), (lx, under), (lx, y), (entry, y),
               (entry, t.y)]
        label_at = (entry - 4, t.y - 6) if label else None
        routed[index] = Edge(src, dst, kind, label, _clean(pts), True, label_at, "end")

    edges = [routed[i] for i in sorted(routed)]
    return _normalised(list(nodes.values()), edges)


def _reach_many(starts: list[str], succ: Mapping[str, list[str]]) -> list[str]:
    seen: list[str] = []
    for start in starts:
        seen += [n for n in _reach(start, succ) if n not in seen]
    return seen


def _clean(points: Sequence[Point]) -> tuple[Point, ...]:
    """Drop repeated points and the middle of three collinear points."""
    out: list[Point] = []
    for p in points:
        if out and out[-1] == p:
            continue
        if len(out) >= 2 and (out[-2][0] == out[-1][0] == p[0] or out[-2][1] == out[-1][1]
                              == p[1]):
            out[-1] = p
            continue
        out.append(p)
    return tuple(out)


def _normalised(nodes: list[Node], edges: list[Edge]) -> Graph:
    """Everything moved so that the drawing starts at (MARGIN, MARGIN)."""
    xs = [n.x for n in nodes] + [p[0] for e in edges for p in e.points]
    ys = [n.y for n in nodes] + [p[1] for e in edges for p in e.points]
    xs += [e.label_at[0] - (160 if e.label_anchor == "end" else 0)
           for e in edges if e.label_at]
    dx, dy = MARGIN - min(xs), MARGIN + 8 - min(ys)

    def move(p: Point) -> Point:
        return (round(p[0] + dx, 1), round(p[1] + dy, 1))

    moved_nodes = tuple(Node(n.name, n.type, round(n.x + dx, 1), round(n.y + dy, 1), n.w, n.h)
                        for n in nodes)
    moved_edges = tuple(Edge(e.source, e.target, e.kind, e.label,
                             tuple(move(p) for p in e.points), e.back,
                             move(e.label_at) if e.label_at else None, e.label_anchor)
                        for e in edges)
    width = max([n.x + n.w for n in moved_nodes] + [p[0] for e in moved_edges
                                                     for p in e.points]) + MARGIN
    height = max([n.y + n.h for n in moved_nodes] + [p[1] for e in moved_edges
                                                      for p in e.points]) + MARGIN
    return Graph(moved_nodes, moved_edges, round(width, 1), round(height, 1))


# --- rendering ------------------------------------------------------------------------

STYLE = """
#graph { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
#graph .edge { fill: none; stroke: #8a94a6; stroke-width: 1.5; }
#graph .edge-catch { stroke: #d08c2f; stroke-dasharray: 5 4; }
#graph .edge-back { stroke: #5b6b86; }
#graph .edge-label { font-size: 11px; fill: #4b5563; paint-order: stroke;
  stroke: #ffffff; stroke-width: 3px; stroke-linejoin: round; }
#graph .edge-label-catch { fill: #a8671a; }
#graph .state { cursor: pointer; }
#graph .state rect { stroke-width: 2; }
#graph .state .name { font-size: 13px; font-weight: 600; fill: #111827; }
#graph .state .meta { font-size: 11px; fill: #374151; }
#graph .state:focus { outline: none; }
#graph .state:focus rect, #graph .state:hover rect { stroke-width: 3.5; }
#graph .state-succeeded rect { fill: #e3f5e6; stroke: #2e8540; }
#graph .state-failed rect { fill: #fde4e1; stroke: #d13212; }
#graph .state-running rect { fill: #e1ecfc; stroke: #0972d3;
  animation: graph-pulse 1.2s ease-in-out infinite; }
#graph .state-caught rect { fill: #fff1d6; stroke: #c77c02; }
#graph .state-not_reached rect { fill: #f3f4f6; stroke: #b6bec9; stroke-dasharray: 4 3; }
#graph .state-not_reached .name { fill: #6b7280; font-weight: 500; }
#graph .state-type-Succeed rect, #graph .state-type-Fail rect { stroke-width: 3; }
@keyframes graph-pulse { 50% { stroke-width: 4.5; stroke-opacity: 0.45; } }
"""


def duration_text(seconds: float | None) -> str:
    """``< 0.1 s``, ``0.4 s``, ``12 s``, ``2 min 3 s``, ``1 h 5 min``; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 0.05:
        return "< 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"


def meta_text(run: StateRun | None) -> str:
    """The line under a state's name: duration, times entered, retries."""
    if run is None:
        return ""
    parts = [duration_text(run.seconds)]
    if run.entered > 1:
        parts.append(f"\u00d7{run.entered}")  # the multiplication sign
    if run.retries:
        parts.append(f"{run.retries} {'retry' if run.retries == 1 else 'retries'}")
    return " · ".join(p for p in parts if p)


def _path(points: Sequence[Point]) -> str:
    return "M" + " L".join(f"{x:g},{y:g}" for x, y in points)


def render_svg(graph: Graph, runs: Mapping[str, StateRun]) -> str:
    """The graph as an ``<svg id="graph">`` element: one ``g.state`` per state, coloured
    by its status in ``runs`` (a state not in it: not_reached), self-contained."""
    esc = html.escape
    out = [f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="0 0 {graph.width:g} {graph.height:g}" width="{graph.width:g}" '
           f'height="{graph.height:g}" style="max-width: 100%; height: auto" role="img" '
           'aria-label="State machine graph">',
           f"<style>{STYLE}</style>",
           '<defs><marker id="graph-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker>'
           '<marker id="graph-arrow-catch" viewBox="0 0 10 10" refX="9" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M0,0 L10,5 L0,10 z" fill="#d08c2f"/></marker></defs>',
           '<g class="edges">']
    for edge in graph.edges:
        classes = f"edge edge-{edge.kind}" + (" edge-back" if edge.back else "")
        marker = "graph-arrow-catch" if edge.kind == "catch" else "graph-arrow"
        out.append(f'<path class="{classes}" data-from="{esc(edge.source)}" '
                   f'data-to="{esc(edge.target)}" d="{_path(edge.points)}" '
                   f'marker-end="url(#{marker})"/>')
    for edge in graph.edges:
        if edge.label and edge.label_at:
            x, y = edge.label_at
            out.append(f'<text class="edge-label edge-label-{edge.kind}" x="{x:g}" '
                       f'y="{y:g}" text-anchor="{edge.label_anchor}">{esc(edge.label)}</text>')
    out.append('</g><g class="states">')
    for node in graph.nodes:
        run = runs.get(node.name)
        status = run.status if run else "not_reached"
        rx = node.h / 2 if node.type == "Choice" else 8
        meta = meta_text(run)
        name_y = node.cy + (-3 if meta else 5)
        title = f"{node.name} ({node.type}): {status.replace('_', ' ')}"
        out.append(
            f'<g class="state state-{status} state-type-{esc(node.type)}" '
            f'data-state="{esc(node.name)}" data-status="{status}" tabindex="0">'
            f"<title>{esc(title)}</title>"
            f'<rect x="{node.x:g}" y="{node.y:g}" width="{node.w:g}" height="{node.h:g}" '
            f'rx="{rx:g}"/>'
            f'<text class="name" x="{node.cx:g}" y="{name_y:g}" text-anchor="middle">'
            f"{esc(node.name)}</text>"
            + (f'<text class="meta" x="{node.cx:g}" y="{node.cy + 13:g}" '
               f'text-anchor="middle">{esc(meta)}</text>' if meta else "")
            + "</g>")
    out.append("</g></svg>")
    return "".join(out)
