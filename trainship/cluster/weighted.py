"""A model's weighted targets on the local stack: the front's ``target`` file and how the proxy
(trainship.cluster.proxy) picks one of them.

The file is one of:

- empty: nothing serves (the proxy answers 503);
- one port, ``8001``: all traffic goes there (what ``front.point`` writes, and all the file
  ever held before traffic could be split: a proxy reads an old file the same way);
- lines ``PORT WEIGHT`` (``8001 70`` / ``8002 30``): traffic is shared in proportion to the
  weights (a canary step). A weight of 0 takes the port out of the share, like a version
  that has no ready pod behind a Service.

The pick is a smooth weighted round-robin (nginx's ``ngx_http_upstream_get_peer``): each
pick adds every target's weight to its running score, takes the highest score (the first
one on a tie, in file order) and takes the total off the winner's score. Over any run of
``sum(weights)`` picks each target is picked exactly ``weight`` times, spread out rather than
in bursts (70/30: 7 picks of one and 3 of the other in every 10), and the sequence is the
same every time: deterministic, so a test can count it. Random picks (what kube-proxy does
per connection on Kubernetes) would only match the weights on average.
"""

from __future__ import annotations

from collections.abc import Iterable

Targets = tuple[tuple[int, int], ...]  # (port, weight), weight > 0, in file order


def parse(text: str) -> Targets:
    """The targets in a target file's text; lines that do not read as ``PORT [WEIGHT]``
    (with a positive port and a weight >= 0) are a ValueError: the proxy then keeps the
    targets it had."""
    found: list[tuple[int, int]] = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if len(words) > 2:
            raise ValueError(f"expected 'PORT [WEIGHT]', got {line!r}")
        port, weight = int(words[0]), int(words[1]) if len(words) == 2 else 100
        if port <= 0 or weight < 0:
            raise ValueError(f"a port must be positive and a weight not negative: {line!r}")
        if weight and port not in (p for p, _ in found):
            found.append((port, weight))
    return tuple(found)


def render(targets: Iterable[tuple[int, int]]) -> str:
    """A target file's text: one port alone when it takes everything (the format a front
    always had), else ``PORT WEIGHT`` lines; targets of weight 0 are left out."""
    kept = [(port, weight) for port, weight in targets if weight > 0]
    if len(kept) == 1:
        return str(kept[0][0])
    return "".join(f"{port} {weight}\n" for port, weight in kept)


class Picker:
    """Smooth weighted round-robin over the current targets; its scores start again whenever
    the targets change (a new step of a canary begins with a fresh sequence)."""

    def __init__(self) -> None:
        self.targets: Targets = ()
        self.scores: dict[int, int] = {}

    def pick(self, targets: Targets, exclude: Iterable[int] = ()) -> int:
        """The next port, 0 when there is none; ports in ``exclude`` (tried already and
        refused) are passed over without a turn."""
        if targets != self.targets:
            self.targets, self.scores = targets, {port: 0 for port, _ in targets}
        skip = set(exclude)
        candidates = [(port, weight) for port, weight in targets if port not in skip]
        if not candidates:
            return 0
        total = sum(weight for _, weight in candidates)
        for port, weight in candidates:
            self.scores[port] += weight
        best = max(candidates, key=lambda target: self.scores[target[0]])[0]
        self.scores[best] -= total
        return best
