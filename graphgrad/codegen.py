"""Generate: an optimised graph becomes readable, vectorized NumPy source.

One statement per node in topological order, the variable named after the
node, the node and its formula as a trailing comment.  Effects (writes into
params and optimizer state) come last, after every read.  The module is
standalone: it imports numpy only, and the NumPy helpers the ops call are
pasted in.
"""
from __future__ import annotations

import builtins
import heapq
import inspect
import itertools
import keyword
import re

import numpy as np
import sympy

from .autodiff import topological_order
from .ir import shape_text
from .ops import get_op
from .ops.elementwise import node_formula, node_kernels
from .ops.functions import masked_product_ok
from .ops.printer import NumPyEmitter, Target, UfuncChain, operand_sources, type_source
from .source_text import WIDTH, called_helpers, fit

RESERVED = {"np", "F", "N", "results", "params", "feeds", "state", "step", "run", "unpack", "buffer", "_workspace"}

# top-level calls that take ``out=``: the value of an elementwise node is written into its own
# buffer, kept between calls, instead of a fresh array (whose page faults dominate large steps)
_OUT_UFUNCS = ("np.exp", "np.log", "np.tanh", "np.maximum", "np.minimum", "np.abs", "np.log1p", "np.expm1",
               "np.sqrt", "np.sin", "np.cos", "np.sign", "np.logaddexp", "np.sinh", "np.cosh", "np.arctan",
               "np.clip")


def _single_call(text: str) -> bool:
    """Whether ``text`` is one call ``f(...)`` whose parenthesis closes at the end."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch == ")" and i != len(text) - 1:
            return False
    return text.endswith(")")


def with_out(expr, printer, out):
    """NumPy source computing ``expr`` with its last operation writing into ``out``, or None."""
    p = printer.doprint
    if expr.is_Add and len(expr.args) >= 2:
        *first, last = expr.args
        coeff, rest = last.as_coeff_Mul()
        if coeff == -1:
            return f"np.subtract({p(sympy.Add(*first))}, {p(rest)}, out={out})"
        return f"np.add({p(sympy.Add(*first))}, {p(last)}, out={out})"
    if expr.is_Mul and len(expr.args) >= 2:
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_Number and coeff != 1 and not rest.is_Mul:
            return f"np.multiply({p(rest)}, {p(coeff)}, out={out})"
        *first, last = expr.args
        return f"np.multiply({p(sympy.Mul(*first))}, {p(last)}, out={out})"
    if expr.is_Pow and expr.exp == 2:
        return f"np.square({p(expr.base)}, out={out})"
    if expr.is_Pow and expr.exp == -1:
        return f"np.divide(1, {p(expr.base)}, out={out})"
    if expr.is_Function and type(expr).__name__ == "select":
        c, a, b = expr.args
        if b == 0 and masked_product_ok(a):
            return f"np.multiply({printer.scalar(a)}, {p(c)} > 0, out={out})"
        return None
    if expr.is_Function:
        text = p(expr)
        if text.startswith(_OUT_UFUNCS) and _single_call(text):
            return f"{text[:-1]}, out={out})"
    return None


class Names:
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


def literal(value) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return f"({text})" if text.startswith("-") else text


def array_literal(value, dtype, xp="np", extra="") -> str:
    """Source text of a const array in namespace ``xp``: its values, or zeros of its shape when it has none
    (an empty list would lose the shape).  ``extra``: more keyword arguments (", device=dev")."""
    value = np.asarray(value)
    if not value.size:
        return f"{xp}.zeros({value.shape}, dtype={dtype}{extra})"
    return f"{xp}.asarray({value.tolist()!r}, dtype={dtype}{extra})"


def elementwise_printer(emitter, graph, node, args, xp="np"):
    """``(expr, syms, printer)`` of an elementwise node: its formula and an ``emitter`` printing it over the
    argument sources, integer arguments of a float value cast (`operand_sources`)."""
    data = graph.nx.nodes[node]
    expr, syms = node_formula(data["op"], len(args), data["attrs"])
    arg_dtypes = [graph.nx.nodes[a]["dtype"] for a in graph.args(node)]
    return expr, syms, emitter(operand_sources(expr, syms, args, data["dtype"], arg_dtypes, xp),
                               type_source(data["dtype"], xp))


def _helper_modules(graph) -> list:
    """The modules defining the helper functions the graph's ops call, in a stable order."""
    modules = {inspect.getmodule(k) for n, d in graph.nx.nodes(data=True)
               for k in node_kernels(get_op(d["op"]), graph.nx.in_degree(n), d["attrs"])}
    return sorted(modules, key=lambda m: m.__name__)


def _helper_names(graph) -> set:
    """Every top-level name of the graph's helper modules, so no variable shadows one."""
    return {name for module in _helper_modules(graph) for name in vars(module) if not name.startswith("__")}


def _fresh(graph, node) -> bool:
    """Whether a node's value is an array the step owns (not a view of a param or feed): safe to overwrite."""
    op = get_op(graph.nx.nodes[node]["op"])
    if op.view:
        (arg, *_) = graph.args(node)
        return graph.nx.out_degree(arg) == 1 and _fresh(graph, arg)
    return op.fresh


def in_place_updates(graph) -> dict:
    """Param updates ``p - rest`` that can be written into ``p`` itself: node -> (param node, rest expr, symbols).

    An elementwise node whose only consumer is an ``assign`` into params[p], of the form ``p - rest`` with ``rest``
    free of ``p`` and no other update reading ``p``, becomes ``np.subtract(p, rest, out=p)``: SGD (and
    the last line of every optimizer) without building a new param-sized array and copying it back.
    """
    found = {}
    for node, data in graph.nx.nodes(data=True):
        succ = list(graph.nx.successors(node))
        if not get_op(data["op"]).elementwise or len(succ) != 1 or graph.nx.out_degree(node) != 1:
            continue
        target = graph.nx.nodes[succ[0]]
        if target["op"] != "assign" or target["attrs"].get("target") != "params":
            continue
        key = target["attrs"]["key"]
        args = graph.args(node)
        expr, syms = node_formula(data["op"], len(args), data["attrs"])
        if key not in args or graph.nx.nodes[key]["op"] != "param" or not expr.is_Add:
            continue
        p_sym = syms[args.index(key)]
        rest = -(expr - p_sym)
        if p_sym in expr.args and not rest.has(p_sym):
            found[node] = (key, rest, syms)
    readers = {}
    for node, (key, _, _) in found.items():
        readers[key] = readers.get(key, 0) + 1
    return {n: v for n, v in found.items() if readers[v[0]] == 1}


def _escaping(graph) -> set:
    """Nodes whose array may be returned: output arguments and what they may be views of.

    Walks back from each ``output`` through every op that is not known to build a fresh array
    (reshapes, transposes, kernels, identities may all return views of their arguments).
    """
    seen = set()
    stack = [a for n, d in graph.nx.nodes(data=True) if d["op"] == "output" for a in graph.args(n)]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        op = get_op(graph.nx.nodes[node]["op"])
        if not (op.elementwise or op.fresh):
            stack.extend(graph.args(node))
    return seen


class _Emitter:
    def __init__(self, graph, check_finite):
        self.graph = graph
        self.check_finite = check_finite
        self.updates = in_place_updates(graph) if not check_finite else {}
        self.owned = set()  # nodes whose value lives in a workspace buffer this step may overwrite
        self.buffers: dict[str, tuple] = {}  # buffer name -> (node, scratch?): what `share_buffers` plans
        self.carried: dict[str, str] = {}  # node -> the argument whose buffer it overwrites
        self.escaping = _escaping(graph)
        self.names = Names(RESERVED | _helper_names(graph) | {"check_finite"})
        self.text: dict[str, str] = {}  # node -> how generated code refers to it
        self.consts: list[str] = []
        self.batch_known = False  # whether the step has read the batch size ``N`` off an input
        self.lines: list[str] = []

    def ref(self, node):
        return self.text[node]

    def source_line(self, node, data):
        op, var = data["op"], self.names(node)
        if op == "const":
            value = data["attrs"]["value"]
            if data["shape"] == () and not isinstance(value, np.ndarray):
                self.text[node] = literal(value)
                return
            self.consts.append(f"{var} = {array_literal(value, type_source(data['dtype']))}  # const {node}")
            self.text[node] = var
            return
        where = {"input": "feeds", "param": "params", "state": "state"}[op]
        self.text[node] = var
        shape, dtype = shape_text(data["shape"]), type_source(data["dtype"])
        self.lines.append(f"    {var} = np.asarray({where}[{node!r}], dtype={dtype})  # {node}: {op} {shape}")
        if None in data["shape"] and not self.batch_known:  # every unknown dim is the batch size (checked on feeding)
            self.lines.append(f"    N = {var}.shape[{data['shape'].index(None)}]  # the batch size")
            self.batch_known = True

    def op_lines(self, node, data):
        op = get_op(data["op"])
        args = [self.ref(a) for a in self.graph.args(node)]
        if op.effect:
            (value,) = self.graph.args(node)
            if value in self.updates:  # already written in place; a copy only when the param needed a cast
                key = data["attrs"]["key"]
                self.lines.append(f"    if {args[0]} is not params[{key!r}]:  # {node}: {op.name} (in place)")
                self.lines.append(f"        {op.emit(args, data['attrs'])}")
                return
            self.lines.append(f"    {op.emit(args, data['attrs'])}  # {node}: {op.name}")
            return
        var = self.names(node)
        self.text[node] = var
        if node in self.updates:
            self._update_in_place(node, data, var)
        elif op.elementwise:
            self._elementwise(node, data, args, var)
        else:
            attrs = {k: v for k, v in data["attrs"].items()}
            detail = "".join(f" {k}={v}" for k, v in attrs.items())
            value = self._into_buffer(node, data, args, op) if op.emit_into else None
            self.lines.append(f"    {var} = {value or op.emit(args, data['attrs'])}  # {node}: {op.name}{detail} "
                              f"{shape_text(data['shape'])}")
        if self.check_finite:
            self.lines.append(f"    check_finite({var}, {node!r}, {op.name!r})")

    def release(self, dead):
        """``del`` the large arrays read for the last time that no workspace buffer holds: a kernel's
        fresh output is freed now instead of when the step returns."""
        names = [self.ref(n) for n in dead
                 if n not in self.owned and n not in self.escaping and n not in self.updates
                 and _large(self.graph.nx.nodes[n]["shape"])
                 and not get_op(self.graph.nx.nodes[n]["op"]).source and self.ref(n).isidentifier()]
        if names:
            self.lines.append(f"    del {', '.join(names)}  # last read; free before the next kernel")

    def _update_in_place(self, node, data, var):
        key, rest, syms = self.updates[node]
        args = self.graph.args(node)
        names = {s.name: self.ref(a) for s, a in zip(syms, args)}
        target = self.ref(key)
        shown = f"{target} - {rest.xreplace({s: sympy.Symbol(names[s.name]) for s in syms})}"
        # rest = c * g with g a dead, freshly computed array of the param's shape: scale g itself
        coeff, factor = rest.as_coeff_Mul()
        value = NumPyEmitter(names).doprint(rest)
        if factor.is_Symbol and coeff.is_Number and coeff != 1:
            g = args[[s.name for s in syms].index(factor.name)]
            if (_fresh(self.graph, g) and self.graph.nx.out_degree(g) == 1
                    and self.graph.nx.nodes[g]["shape"] == data["shape"]):
                value = f"np.multiply({self.ref(g)}, {NumPyEmitter(names).doprint(coeff)}, out={self.ref(g)})"
        self.lines.append(f"    {var} = np.subtract({target}, {value}, out={target})  # {node}: {data['op']} = {shown} "
                          f"(in place) {shape_text(data['shape'])}")

    def _into_buffer(self, node, data, args, op):
        """The op's ``emit_into`` a reusable buffer, for a float value no result returns; else None."""
        if not data["dtype"].startswith("float") or node in self.escaping:
            return None
        if any(self.graph.nx.nodes[n]["dtype"] != data["dtype"] for n in self.graph.args(node)):
            return None
        shape_src = self._shape_source(data["shape"])
        if shape_src is None:
            return None
        self.owned.add(node)
        self.buffers[self.names(node)] = (node, False)
        return op.emit_into(args, data["attrs"], f"buffer(state, {self.names(node)!r}, {shape_src})")

    def _shape_source(self, shape):
        """Source text of ``shape`` at run time (the batch dimension is ``N``), or None."""
        return shape_text(shape) if None not in shape or self.batch_known else None

    def _buffer(self, node, data, args):
        """Where a float node that no result returns writes its value: an argument that dies here
        (same shape), else its own ``buffer(...)``; None for a fresh array."""
        if not data["dtype"].startswith("float") or data["shape"] == ():
            return None
        if node in self.escaping:
            return None  # a returned value (or a view of one) must not be overwritten by the next call
        for a, n in zip(args, self.graph.args(node)):
            nd = self.graph.nx.nodes[n]
            if (n in self.owned and self.graph.nx.out_degree(n) == 1 and nd["shape"] == data["shape"]
                    and nd["dtype"] == data["dtype"]):
                self.owned.add(node)
                self.carried[node] = n
                return a  # dead after this statement: overwrite it in place
        return self._own_buffer(node, data, args)

    def _own_buffer(self, node, data, args, name=None):
        """``buffer(...)`` of the node's shape, under the node's variable name or ``name`` (a scratch array)."""
        shape_src = self._shape_source(data["shape"])
        if shape_src is None:
            return None
        self.owned.add(node)
        self.buffers[name or self.names(node)] = (node, name is not None)
        return f"buffer(state, {name or self.names(node)!r}, {shape_src})"

    def _elementwise(self, node, data, args, var):
        expr, syms, printer = elementwise_printer(NumPyEmitter, self.graph, node, args)
        temps, (reduced,) = sympy.cse([expr], symbols=sympy.numbered_symbols(f"{var}_t", real=True))
        comment = formula_comment(node, data, expr, syms, args)
        out = self._buffer(node, data, args) if set(syms) <= expr.free_symbols else None
        if out is not None and _large(data["shape"]):
            lines = self._chain(node, data, args, syms, temps, reduced, printer, var, out)
        else:
            value = (out and with_out(reduced, printer, out)) or self._value(expr, syms, reduced, printer, args)
            lines = [f"{t} = {printer.doprint(v)}" for t, v in temps] + [f"{var} = {value}"]
        self.lines.append(f"    {lines[0]}{comment}")
        self.lines.extend(f"    {line}" for line in lines[1:])

    def _value(self, expr, syms, reduced, printer, args):
        """The node's value as one NumPy expression (a fresh array)."""
        value = printer.doprint(reduced)
        # a copy where the expression is an argument itself: an elementwise value is never a view,
        # which the buffer plan and the outputs rely on
        if not set(syms) <= expr.free_symbols:  # e.g. x*0 simplified to 0: keep the shape and dtype
            shapes = ", ".join(f"np.shape({a})" for a in args)
            return (f"np.array(np.broadcast_to(np.asarray({value}, dtype={printer.value_type}), "
                    f"np.broadcast_shapes({shapes})))")
        return f"np.array({value})" if reduced.is_Symbol else value

    def _chain(self, node, data, args, syms, temps, reduced, printer, var, out):
        """Source lines evaluating the node into ``out`` by a `UfuncChain`, the CSE temporaries of the
        node's size in scratch arrays; ``out`` is replaced by the node's own buffer when it is a dying
        argument the chain would read after overwriting it."""
        shapes = {s: self.graph.nx.nodes[a]["shape"] for s, a in zip(syms, self.graph.args(node))}
        scratch_count = itertools.count(1)

        def full(e):
            return bool(e.free_symbols) and broadcast_or_none([shapes[s] for s in e.free_symbols]) == data["shape"]

        def scratch(name=None):
            name = name or self.names(f"{node}/scratch{next(scratch_count)}")
            return Target(name, self._own_buffer(node, data, args, name))

        lines = []
        for temp, value in temps:
            shapes[temp] = broadcast_or_none([shapes[s] for s in value.free_symbols]) if value.free_symbols else ()
            if full(value) and not value.is_Symbol:
                chain = UfuncChain(printer, full, scratch, _OUT_UFUNCS)
                chain.into(value, scratch(str(temp)))
                lines += [text for text, _ in chain.steps]
            else:
                lines.append(f"{temp} = {printer.doprint(value)}")
        chain = UfuncChain(printer, full, scratch, _OUT_UFUNCS)
        chain.into(reduced, Target(var, out))
        if out in args and _reads_after_write(chain.steps, syms[args.index(out)]):
            chain = UfuncChain(printer, full, scratch, _OUT_UFUNCS)
            chain.into(reduced, Target(var, self._own_buffer(node, data, args)))
        return lines + [text for text, _ in chain.steps]


def formula_comment(node, data, expr, syms, args) -> str:
    """The trailing comment of an elementwise node: its formula over the argument names, and its shape."""
    shown = str(expr.xreplace({s: sympy.Symbol(a) for s, a in zip(syms, args)}))
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return f"  # {node}: {data['op']} = {shown} {shape_text(data['shape'])}"


def _large(shape) -> bool:
    """Whether an array is big enough that an allocation per intermediate costs more than a call per step."""
    return None in shape or int(np.prod(shape)) >= 4096


def _reads_after_write(steps, symbol) -> bool:
    """Whether a chain reads ``symbol`` after the step that first writes its destination."""
    writes = [i for i, (_, reads) in enumerate(steps) if reads is not None]
    return any(reads and symbol in reads for _, reads in steps[writes[0] + 1:]) if writes else False


def broadcast_or_none(shapes):
    """The broadcast of shapes whose unknown (batch) dims are None; None where two dims disagree."""
    rank = max(len(s) for s in shapes)
    dims = []
    for column in zip(*[(1,) * (rank - len(s)) + tuple(s) for s in shapes]):
        sizes = set(column) - {1}
        if len(sizes) > 1:
            return None
        dims.append(sizes.pop() if sizes else 1)
    return tuple(dims)


def _may_view(graph, node) -> bool:
    """Whether a node's array may be a view of an argument's (reshapes, transposes, kernels)."""
    op = get_op(graph.nx.nodes[node]["op"])
    return not (op.elementwise or op.fresh or op.effect)


def share_buffers(graph, order, emitter) -> dict:
    """Buffer name -> workspace slot, so that the step's memory is its widest live set, not the
    sum of its intermediates.

    A buffer is live from the node that first writes it to the last read of every value kept in
    it: the nodes that overwrite it in place, and any view of those.  Buffers of one shape whose
    live ranges do not overlap share a slot (interval colouring, greedily in program order).
    """
    pos = {n: i for i, n in enumerate(order)}
    last = {}
    for n in reversed(order):
        succ = [v for v in graph.nx.successors(n) if v in pos]
        last[n] = max([pos[n]] + [pos[v] for v in succ] + [last[v] for v in succ if _may_view(graph, v)])
    carried_by = {}
    for node, arg in emitter.carried.items():
        carried_by.setdefault(arg, []).append(node)

    def end(node):
        return max([last[node]] + [end(n) for n in carried_by.get(node, [])])

    ranges = sorted((pos[node], pos[node] if scratch else end(node), name, graph.nx.nodes[node]["shape"])
                    for name, (node, scratch) in emitter.buffers.items())
    slots, busy, free = {}, [], {}  # name -> slot; heap of (end, slot, shape) in use; shape -> free slots
    new_slots = (f"buf{k}" for k in itertools.count())
    for start, stop, name, shape in ranges:
        while busy and busy[0][0] < start:
            _, slot, released = heapq.heappop(busy)
            free.setdefault(released, []).append(slot)
        slots[name] = free[shape].pop() if free.get(shape) else next(new_slots)
        heapq.heappush(busy, (stop, slots[name], shape))
    return slots


def step_order(graph, updates=()) -> list:
    """The nodes in topological order, effects last: in-place param ``updates`` run after every
    other read of the params, then the assigns."""
    order = topological_order(graph)
    effects_last = [n for n in order if n in updates] + [n for n in order if graph.nx.nodes[n]["op"] == "assign"]
    return [n for n in order if graph.nx.nodes[n]["op"] != "assign" and n not in updates] + effects_last


def generate(graph, dtype: str = "float32", check_finite: bool = False, title: str = "",
             single: bool = True, mode: str = "value") -> str:
    """Python source of a module with ``step(params, feeds, state) -> results``.

    ``results`` maps each ``output`` node's key to its value; ``assign``
    nodes write into ``params``/``state`` at the end of the step.
    """
    emitter = _Emitter(graph, check_finite)
    order = step_order(graph, emitter.updates)
    last_read = {a: i for i, n in enumerate(order) for a in graph.args(n)}
    for i, node in enumerate(order):
        data = graph.nx.nodes[node]
        if get_op(data["op"]).source:
            emitter.source_line(node, data)
        else:
            emitter.op_lines(node, data)
            emitter.release([a for a in dict.fromkeys(graph.args(node)) if last_read[a] == i])
    slots = share_buffers(graph, order, emitter)
    emitter.lines = [re.sub(r"buffer\(state, '([^']+)', ", lambda m: f"buffer(state, {slots[m.group(1)]!r}, ", line)
                     for line in emitter.lines]
    return _module(graph, dtype, emitter, title, check_finite, single, mode)


def _spec(graph, op):
    return {n: (d["shape"], d["dtype"]) for n, d in graph.nx.nodes(data=True) if d["op"] == op}


def _assignment(name, mapping) -> str:
    """``name = {...}``, one entry a line when the whole does not fit on one."""
    line = f"{name} = {mapping!r}"
    if len(line) <= WIDTH:
        return line
    return "\n".join([f"{name} = {{"] + [f"    {k!r}: {v!r}," for k, v in mapping.items()] + ["}"])


def _fitted(lines) -> str:
    return "\n".join(part for line in lines for part in fit(line))


def interface(graph, single, mode) -> str:
    """The constants every generated module opens with: what it reads, keeps and returns."""
    state = {n: (d["shape"], d["attrs"].get("fill", 0.0)) for n, d in graph.nx.nodes(data=True) if d["op"] == "state"}
    keys = [d["attrs"]["key"] for _, d in graph.nx.nodes(data=True) if d["op"] == "output"]
    return "\n".join([
        _assignment("INPUTS", _spec(graph, "input")),
        _assignment("PARAMS", _spec(graph, "param")),
        _assignment("STATE", state),
        f"RESULTS = {sorted(keys)!r}",
        f"SINGLE = {single!r}",
        f'MODE = {mode!r}  # "value": outputs; "grads": (outputs, grads); "step": outputs after updating params',
    ])


def _module(graph, dtype, emitter, title, check_finite, single, mode) -> str:
    body = _fitted(emitter.lines) or "    pass"
    helpers = [_BUFFER] if "buffer(state, " in body else []
    if check_finite:
        helpers.append(inspect.getsource(_check_finite_source).replace("_check_finite_source", "check_finite"))
    helpers.append(called_helpers(_helper_modules(graph), f"def step(params, feeds, state):\n{body}"))
    helpers = "\n\n".join(h.strip() + "\n" for h in helpers if h)
    consts = _fitted(emitter.consts)
    source = f'''"""{title or "graphgrad generated module"}.

Generated by graphgrad; standalone, it imports numpy only.  ``step`` is the computation, one
statement per node; ``run(params, **feeds)`` calls it and returns what the compiled function
returned.  The helper functions ``step`` calls follow it.
"""
import numpy as np

F = np.{dtype}
{interface(graph, single, mode)}
{consts}

def step(params, feeds, state):
    results = {{}}
{body}
    return results


def new_state():
    """Optimizer state at step 0."""
    return {{name: np.full(shape, fill, dtype=F) for name, (shape, fill) in STATE.items()}}


{RUN_SOURCE}

{helpers}'''
    return source.rstrip() + "\n"


# the end of every generated module, whatever its target: the compiled function's own state and its call
RUN_SOURCE = '''_state = new_state()


def unpack(results, single=SINGLE, mode=MODE):
    outputs = [results[f"out:{i}"] for i in range(sum(k.startswith("out:") for k in results))]
    value = outputs[0] if single else outputs
    if mode == "grads":
        return value, {k[5:]: v for k, v in results.items() if k.startswith("grad:")}
    return value


def run(params, **feeds):
    """One call of the compiled function: forward, backward and updates as compiled."""
    return unpack(step(params, feeds, _state))
'''


_BUFFER = '''def buffer(state, name, shape):
    """Workspace slot ``name``: an array reused by every call (and by values whose lifetimes do not
    overlap), kept in this function's own state, allocated again when the batch size changes."""
    workspace = state.setdefault("_workspace", {})
    array = workspace.get(name)
    if array is None or array.shape != shape:
        array = workspace[name] = np.empty(shape, dtype=F)
    return array
'''


def _check_finite_source(value, node, op):
    value = np.asarray(value)  # a batch size is a Python float
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise FloatingPointError(f"node {node!r} ({op}) produced NaN or Inf")
