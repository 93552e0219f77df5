"""Layouts of drawings as Graphviz computes them (``dot -Tjson``): node positions, cluster boxes,
and the number of places where drawn edges cross."""
from __future__ import annotations

import itertools
import json

import numpy as np


def layout(dot) -> dict:
    """The ``dot -Tjson`` layout of a graphviz.Digraph."""
    return json.loads(dot.pipe(format="json").decode())


def node_positions(laid: dict) -> dict:
    """name -> (x, y) of every node (y grows upwards, as Graphviz writes it)."""
    return {o["name"]: tuple(map(float, o["pos"].split(","))) for o in laid.get("objects", []) if "pos" in o}


def cluster_boxes(laid: dict) -> dict:
    """cluster name -> (x0, y0, x1, y1)."""
    return {o["name"]: tuple(map(float, o["bb"].split(","))) for o in laid.get("objects", [])
            if o["name"].startswith("cluster") and "bb" in o}


def _bezier(points, samples=8):
    """A polyline through the cubic Bézier pieces Graphviz draws an edge with."""
    points = np.asarray(points, float)
    out = [points[0]]
    for k in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[k:k + 4]
        for t in np.linspace(0, 1, samples + 1)[1:]:
            out.append((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3)
    return np.array(out)


def edge_paths(laid: dict) -> list:
    """(tail, head, polyline) of every drawn (visible) edge."""
    names = {o["_gvid"]: o["name"] for o in laid.get("objects", [])}
    paths = []
    for e in laid.get("edges", []):
        if e.get("style") == "invis":
            continue
        bez = [op["points"] for op in e.get("_draw_", []) if op["op"] in ("b", "B")]
        if bez:
            paths.append((names[e["tail"]], names[e["head"]], _bezier(bez[0])))
    return paths


def _cross_points(p, q) -> np.ndarray:
    """The points where polyline ``p`` properly crosses polyline ``q``."""
    a, b = p[:-1, None, :], p[1:, None, :]
    c, d = q[None, :-1, :], q[None, 1:, :]

    def orient(u, v, w):
        return np.sign((v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (w[..., 0] - u[..., 0]))

    hit = (orient(a, b, c) * orient(a, b, d) < 0) & (orient(c, d, a) * orient(c, d, b) < 0)
    return np.broadcast_to(a, hit.shape + (2,))[hit]


def crossings(dot, margin: float = 12.0) -> int:
    """How many times drawn edges cross each other; crossings within ``margin`` points of an edge's
    end (edges fanning into one node overlap there) do not count."""
    paths = [path for *_, path in edge_paths(layout(dot))]
    total = 0
    for p, q in itertools.combinations(paths, 2):
        if (p.max(0) < q.min(0)).any() or (q.max(0) < p.min(0)).any():
            continue
        ends = np.array([p[0], p[-1], q[0], q[-1]])
        for point in _cross_points(p, q):
            total += bool(np.linalg.norm(ends - point, axis=1).min() > margin)
    return total
