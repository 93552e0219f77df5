"""Generate: an optimised graph becomes readable, vectorized NumPy source.

One statement per node in topological order, the variable named after the
node, the node and its formula as a trailing comment.  Effects (writes into
params and optimizer state) come last, after every read.  The module is
standalone: it imports numpy only, and the NumPy helpers the ops call are
pasted in.
"""
from __future__ import annotations

import builtins
import inspect
import keyword
import re

import numpy as np
import sympy

from .autodiff import topological_order
from .ops import get_op
from .ops.elementwise import node_formula
from .ops.printer import NumPyEmitter

_RESERVED = {"np", "F", "results", "params", "feeds", "state", "step", "run", "unpack"}


class _Names:
    """Python identifiers for nodes: sanitized, unique, never shadowing a helper."""

    def __init__(self, reserved):
        self.taken = set(reserved) | set(keyword.kwlist) | set(dir(builtins))
        self.of: dict[str, str] = {}

    def __call__(self, node: str) -> str:
        if node not in self.of:
            base = re.sub(r"\W", "_", node)
            base = base if re.match(r"[A-Za-z_]", base) else "v_" + base
            name, k = base, 0
            while name in self.taken:
                k += 1
                name = f"{base}_{k}"
            self.taken.add(name)
            self.of[node] = name
        return self.of[node]


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _literal(value) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return f"({text})" if text.startswith("-") else text


def _helper_modules(graph) -> list:
    """The modules defining the helper functions the graph's ops call, in a stable order."""
    modules = {inspect.getmodule(k) for n in graph.nx.nodes for k in get_op(graph.nx.nodes[n]["op"]).kernels}
    return sorted(modules, key=lambda m: m.__name__)


def kernel_sources(graph) -> str:
    """The source of every helper module the graph's ops call, numpy import removed."""
    parts = []
    for module in _helper_modules(graph):
        body = re.sub(r"^import numpy as np\n", "", inspect.getsource(module), flags=re.M)
        parts.append(f"# ---- helpers from {module.__name__} ----\n{body.strip()}\n")
    return "\n\n".join(parts)


def _helper_names(graph) -> set:
    """Every top-level name the pasted helper modules define, so no variable shadows one."""
    return {name for module in _helper_modules(graph) for name in vars(module) if not name.startswith("__")}


class _Emitter:
    def __init__(self, graph, check_finite):
        self.graph = graph
        self.check_finite = check_finite
        self.names = _Names(_RESERVED | _helper_names(graph) | {"check_finite"})
        self.text: dict[str, str] = {}  # node -> how generated code refers to it
        self.consts: list[str] = []
        self.lines: list[str] = []

    def ref(self, node):
        return self.text[node]

    def source_line(self, node, data):
        op, var = data["op"], self.names(node)
        if op == "const":
            value = data["attrs"]["value"]
            if data["shape"] == () and not isinstance(value, np.ndarray):
                self.text[node] = _literal(value)
                return
            dtype = "F" if data["dtype"].startswith("float") else f"np.{data['dtype']}"
            self.consts.append(f"{var} = np.array({np.asarray(value).tolist()!r}, dtype={dtype})  # const {node}")
            self.text[node] = var
            return
        where = {"input": "feeds", "param": "params", "state": "state"}[op]
        cast = ", dtype=F" if data["dtype"].startswith("float") else ""
        self.text[node] = var
        self.lines.append(f"    {var} = np.asarray({where}[{node!r}]{cast})  # {node}: {op} {_fmt_shape(data['shape'])}")

    def op_lines(self, node, data):
        op = get_op(data["op"])
        args = [self.ref(a) for a in self.graph.args(node)]
        if op.effect:
            self.lines.append(f"    {op.emit(args, data['attrs'])}  # {node}: {op.name}")
            return
        var = self.names(node)
        self.text[node] = var
        if op.elementwise:
            self._elementwise(node, data, args, var)
        else:
            attrs = {k: v for k, v in data["attrs"].items()}
            detail = "".join(f" {k}={v}" for k, v in attrs.items())
            self.lines.append(f"    {var} = {op.emit(args, data['attrs'])}  # {node}: {op.name}{detail} "
                              f"{_fmt_shape(data['shape'])}")
        if self.check_finite:
            self.lines.append(f"    check_finite({var}, {node!r}, {op.name!r})")

    def _elementwise(self, node, data, args, var):
        expr, syms = node_formula(data["op"], len(args), data["attrs"])
        names = {s.name: a for s, a in zip(syms, args)}
        printer = NumPyEmitter(names)
        temps, (reduced,) = sympy.cse([expr], symbols=sympy.numbered_symbols(f"{var}_t", real=True))
        shown = str(expr.xreplace({s: sympy.Symbol(a) for s, a in zip(syms, args)}))
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        for temp, value in temps:
            self.lines.append(f"    {temp} = {printer.doprint(value)}")
        value = printer.doprint(reduced)
        if not set(syms) <= expr.free_symbols:  # e.g. x*0 simplified to 0: keep the shape and dtype
            shapes = ", ".join(f"np.shape({a})" for a in args)
            value = f"np.broadcast_to(np.asarray({value}, dtype=F), np.broadcast_shapes({shapes}))"
        self.lines.append(f"    {var} = {value}  # {node}: {data['op']} = {shown} {_fmt_shape(data['shape'])}")


def generate(graph, dtype: str = "float32", check_finite: bool = False, title: str = "",
             single: bool = True, mode: str = "value") -> str:
    """Python source of a module with ``step(params, feeds, state) -> results``.

    ``results`` maps each ``output`` node's key to its value; ``assign``
    nodes write into ``params``/``state`` at the end of the step.
    """
    order = topological_order(graph)
    effects_last = [n for n in order if graph.nx.nodes[n]["op"] == "assign"]
    order = [n for n in order if graph.nx.nodes[n]["op"] != "assign"] + effects_last
    emitter = _Emitter(graph, check_finite)
    for node in order:
        data = graph.nx.nodes[node]
        if get_op(data["op"]).source:
            emitter.source_line(node, data)
        else:
            emitter.op_lines(node, data)
    return _module(graph, dtype, emitter, title, check_finite, single, mode)


def _spec(graph, op):
    return {n: (d["shape"], d["dtype"]) for n, d in graph.nx.nodes(data=True) if d["op"] == op}


def _module(graph, dtype, emitter, title, check_finite, single, mode) -> str:
    state = {n: (d["shape"], d["attrs"].get("fill", 0.0)) for n, d in graph.nx.nodes(data=True) if d["op"] == "state"}
    keys = [d["attrs"]["key"] for _, d in graph.nx.nodes(data=True) if d["op"] == "output"]
    helpers = kernel_sources(graph)
    if check_finite:
        helpers += "\n\n" + inspect.getsource(_check_finite_source).replace("_check_finite_source", "check_finite")
    body = "\n".join(emitter.lines) or "    pass"
    return f'''"""{title or "graphgrad generated module"}.

Generated by graphgrad; standalone, it imports numpy only.
``run(params, **feeds)`` returns what the compiled function returned.
"""
import numpy as np

F = np.{dtype}
INPUTS = {_spec(graph, "input")!r}
PARAMS = {_spec(graph, "param")!r}
STATE = {state!r}
RESULTS = {sorted(keys)!r}
SINGLE = {single!r}
MODE = {mode!r}  # "value": outputs; "grads": (outputs, grads); "step": outputs after updating params

{helpers}

{chr(10).join(emitter.consts)}


def step(params, feeds, state):
    results = {{}}
{body}
    return results


def new_state():
    """Optimizer state at step 0."""
    return {{name: np.full(shape, fill, dtype=F) for name, (shape, fill) in STATE.items()}}


_state = new_state()


def unpack(results, single=SINGLE, mode=MODE):
    outputs = [results[f"out:{{i}}"] for i in range(sum(k.startswith("out:") for k in results))]
    value = outputs[0] if single else outputs
    if mode == "grads":
        return value, {{k[5:]: v for k, v in results.items() if k.startswith("grad:")}}
    return value


def run(params, **feeds):
    """One call of the compiled function: forward, backward and updates as compiled."""
    return unpack(step(params, feeds, _state))
'''


def _check_finite_source(value, node, op):
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise FloatingPointError(f"node {node!r} ({op}) produced NaN or Inf")
