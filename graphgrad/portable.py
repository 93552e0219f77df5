"""Generate, the Array API target: an optimised graph becomes readable source written against
the Array API standard, so that one compiled step runs on NumPy, PyTorch, JAX, Dask and CuPy
arrays and returns arrays of the caller's library.

The statements, their order, the variable names and the formula comments are the NumPy
target's (`codegen`); the dialect differs: ``xp`` is the namespace of the step's arrays
(``array_api_compat.array_namespace``), every value is a new array (no ``out=``, no
workspace, no in-place writes, no strided views) and params and optimizer state are updated
by binding new arrays into their dicts.  As a SymPy printer has a method per expression
class, this target has a printing rule per op (`EMIT`); an op without one is a `GraphError`
naming it.  The kernels are `portable_kernels`, pasted into the module like the NumPy
target's.  Recurrent scans are unrolled before differentiation (``runtime``), so they need no
kernel here.
"""
from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import sympy

from . import portable_kernels
from .codegen import (RESERVED, RUN_SOURCE, Names, array_literal, elementwise_printer, formula_comment, interface,
                      literal, step_order)
from .errors import GraphError
from .ir import shape_text
from .kernels import as_pair as pair
from .ops import get_op
from .ops.conv import geometry_args, pool_args
from .ops.printer import NumPyEmitter, type_source
from .ops.structural import emit_index

_XP_FUNCS = {
    "exp": "xp.exp", "log": "xp.log", "tanh": "xp.tanh", "sin": "xp.sin", "cos": "xp.cos", "Abs": "xp.abs",
    "sign": "xp.sign", "log1p": "xp.log1p", "expm1": "xp.expm1", "sinh": "xp.sinh", "cosh": "xp.cosh",
    "atan": "xp.atan",
}


class ArrayAPIEmitter(NumPyEmitter):
    """Prints a SymPy expression in the functions of the Array API standard.

    The activations print NumPy through their ``_numpycode``; this printer looks for
    ``_xpcode`` instead, so they fall through to the ``_print_<name>`` methods below.
    Python numbers stay weakly typed in every library: no ``F(...)`` casts.
    """

    printmethod = "_xpcode"

    def _print_Function(self, e):
        name = type(e).__name__
        if name not in _XP_FUNCS:
            raise NotImplementedError(f"no Array API emission for SymPy function {name}")
        return f"{_XP_FUNCS[name]}({', '.join(self._print(a) for a in e.args)})"

    def _print_Exp1(self, e):
        return "math.e"

    def _print_Pi(self, e):
        return "math.pi"

    def _print_Pow(self, e, rational=False):
        if e.exp in (sympy.S.Half, -sympy.S.Half):
            root = f"xp.sqrt({self._print(e.base)})"
            return root if e.exp > 0 else f"(1 / {root})"
        return super()._print_Pow(e, rational)

    def scalar(self, e) -> str:
        return self._print(e)

    def _print_select(self, e):
        c, a, b = (self._print(t) for t in e.args)
        return f"xp.where({c} > 0, {a}, {b})"

    def _print_sigmoid(self, e):
        return f"(0.5 * xp.tanh(0.5 * {self.parenthesize(e.args[0], 50)}) + 0.5)"  # no exp to overflow

    def _print_erf(self, e):
        return f"erf(xp, {self._print(e.args[0])})"

    def _print_gaussian(self, e):
        return f"xp.exp(-xp.square(xp.clip({self._print(e.args[0])}, -40, 40)))"

    def _print_tanh_clipped(self, e):
        return f"xp.clip({self._print(e.args[0])}, -10, 10)"

    def _print_relu(self, e):
        return f"xp.maximum({self._print(e.args[0])}, 0)"

    def _print_softplus(self, e):
        return f"xp.logaddexp(0, {self._print(e.args[0])})"

    def _print_elu(self, e):
        x, alpha = (self._print(a) for a in e.args)
        return f"xp.where({x} > 0, {x}, {alpha} * xp.expm1(xp.minimum({x}, 0)))"

    def _print_maximum(self, e):
        return f"xp.maximum({self._print(e.args[0])}, {self._print(e.args[1])})"

    def _print_minimum(self, e):
        return f"xp.minimum({self._print(e.args[0])}, {self._print(e.args[1])})"

    def _print_power(self, e):
        return e._numpycode(self)  # plain operators

    def _print_gelu_tanh(self, e):
        return e._numpycode(self)  # SymPy's tanh and tanh_clipped, printed by this printer

    _print_gelu_tanh_grad = _print_gelu_tanh


def _reduce(fn):
    return lambda a, at: f"xp.{fn}({a[0]}, axis={tuple(at['axis'])}, keepdims={bool(at.get('keepdims'))})"


def _inner(a, at):
    return f"xp.sum({a[0]} * {a[1]})" + (f" / numel({a[0]})" if at["mean"] else "")


# ops whose NumPy emission is already Array API source: operators, basic indexing, shapes
_SAME_AS_NUMPY = ("greater", "greater_equal", "equal", "matmul", "getitem", "output", "axis_size", "stop_gradient")

EMIT = {
    "cast": lambda a, at: f"xp.astype({a[0]}, xp.{at['to']})",
    "transpose": lambda a, at: f"xp.permute_dims({a[0]}, {tuple(at['axes'])})",
    "reshape": lambda a, at: f"xp.reshape({a[0]}, {tuple(-1 if d is None else d for d in at['shape'])})",
    "broadcast_like": lambda a, at: f"xp.broadcast_to({a[0]}, tuple({a[1]}.shape))",
    "sum": _reduce("sum"), "mean": _reduce("mean"), "max": _reduce("max"), "inner": _inner,
    "mean_grad": lambda a, at: f"xp.broadcast_to({a[0]} / (numel({a[1]}) // numel({a[0]})), tuple({a[1]}.shape))",
    "scatter": lambda a, at: f"scatter_into_zeros(xp, {a[0]}, {a[1]}, {emit_index(at['index'])})",
    "concat": lambda a, at: f"xp.concat([{', '.join(a)}], axis={at['axis']})",
    "stack": lambda a, at: f"xp.stack([{', '.join(a)}], axis={at['axis']})",
    "softmax": lambda a, at: f"softmax(xp, {a[0]}, {at['axis']})",
    "log_softmax": lambda a, at: f"log_softmax(xp, {a[0]}, {at['axis']})",
    "softmax_cross_entropy": lambda a, at: f"softmax_xent(xp, {a[0]}, {a[1]})",
    "one_hot": lambda a, at: f"one_hot(xp, {a[0]}, {at['num_classes']}, F)",
    "zeros_like": lambda a, at: f"xp.zeros_like({a[0]})",
    "assign": lambda a, at: f"{at['target']}[{at['key']!r}] = {a[0]}",
    "dropout_mask": lambda a, at: f"dropout(xp, {a[0]}, {float(at['rate'])!r}, {int(at['seed'])}, state)",
    "batch_norm_stats": lambda a, at: f"batch_norm_stats(xp, {a[0]})",
    "conv2d": lambda a, at: f"conv2d(xp, {a[0]}, {a[1]}, {geometry_args(at)})",
    "conv2d_grad_input": lambda a, at: (f"conv2d_grad_input(xp, {a[0]}, {a[1]}, {tuple(at['input_hw'])}, "
                                        f"{geometry_args(at)})"),
    "conv2d_grad_weight": lambda a, at: (f"conv2d_grad_weight(xp, {a[0]}, {a[1]}, {tuple(at['kernel_hw'])}, "
                                         f"{geometry_args(at)})"),
    "conv_transpose2d": lambda a, at: (f"conv_transpose2d(xp, {a[0]}, {a[1]}, {pair(at['stride'])}, "
                                       f"{pair(at['padding'])}, {pair(at['output_padding'])}, {pair(at['dilation'])})"),
    "maxpool2d": lambda a, at: f"maxpool2d(xp, {a[0]}, {pool_args(at)})",
    "maxpool2d_grad": lambda a, at: f"maxpool2d_grad(xp, {a[0]}, {a[1]}, {pool_args(at)}, {a[2]})",
    "maxpool2d_gather": lambda a, at: f"maxpool2d_gather_at(xp, {a[0]}, {a[1]}, {a[2]}, {pool_args(at)})",
    "avgpool2d": lambda a, at: f"avgpool2d(xp, {a[0]}, {pool_args(at)})",
    "avgpool2d_grad": lambda a, at: f"avgpool2d_grad(xp, {a[0]}, {tuple(at['input_hw'])}, {pool_args(at)})",
    "upsample_nearest2d": lambda a, at: f"upsample_nearest2d(xp, {a[0]}, {pair(at['scale'])})",
    "upsample_nearest2d_grad": lambda a, at: f"upsample_nearest2d_grad(xp, {a[0]}, {pair(at['scale'])})",
    "upsample_bilinear2d": lambda a, at: f"upsample_bilinear2d(xp, {a[0]}, {pair(at['scale'])})",
    "upsample_bilinear2d_grad": lambda a, at: (f"upsample_bilinear2d_grad(xp, {a[0]}, {tuple(at['input_hw'])}, "
                                               f"{pair(at['scale'])})"),
}


def supported(op_name: str) -> bool:
    """Whether the Array API target can print an op (recurrent scans are unrolled before)."""
    op = get_op(op_name)
    return op.source or op.elementwise or op_name in EMIT or op_name in _SAME_AS_NUMPY


def kernel_sources() -> str:
    """The NumPy target's host helpers the kernels borrow, then every function of `portable_kernels`."""
    own = [f for f in vars(portable_kernels).values()
           if inspect.isfunction(f) and f.__module__ == portable_kernels.__name__]
    own.sort(key=lambda f: f.__code__.co_firstlineno)
    return "\n\n".join(inspect.getsource(f).strip() + "\n" for f in (*portable_kernels.HOST_HELPERS, *own))


_HELPER_NAMES = {f.__name__ for f in portable_kernels.HOST_HELPERS} | set(vars(portable_kernels))


class _Printer:
    def __init__(self, graph):
        self.graph = graph
        self.names = Names(RESERVED | _HELPER_NAMES | {"xp", "dev", "math", "array_namespace", "device", "DTYPE"})
        self.text: dict[str, str] = {}
        self.lines: list[str] = []

    def node(self, node):
        data = self.graph.nx.nodes[node]
        op = get_op(data["op"])
        if op.source:
            return self._source(node, data)
        args = [self.text[a] for a in self.graph.args(node)]
        if op.effect:
            return self.lines.append(f"    {EMIT.get(op.name, op.emit)(args, data['attrs'])}  # {node}: {op.name}")
        var = self.text[node] = self.names(node)
        if op.elementwise:
            return self._elementwise(node, data, args, var)
        if op.name in _SAME_AS_NUMPY:
            value = op.emit(args, data["attrs"])
        elif op.name in EMIT:
            value = EMIT[op.name](args, data["attrs"])
        else:
            raise GraphError(f"{op.name} node {node!r} has no Array API emission (ops with one: "
                             f"{', '.join(sorted(EMIT))}, the elementwise ops and {', '.join(_SAME_AS_NUMPY)})")
        detail = "".join(f" {k}={v}" for k, v in data["attrs"].items())
        self.lines.append(f"    {var} = {value}  # {node}: {op.name}{detail} {shape_text(data['shape'])}")

    def _source(self, node, data):
        op, var = data["op"], self.names(node)
        if op == "const":
            value = data["attrs"]["value"]
            if data["shape"] == () and not isinstance(value, np.ndarray):
                self.text[node] = literal(value)
                return
            self.text[node] = var
            array = array_literal(value, type_source(data["dtype"], "xp"), "xp", ", device=dev")
            return self.lines.append(f"    {var} = {array}  # const {node}")
        self.text[node] = var
        comment = f"  # {node}: {op} {shape_text(data['shape'])}"
        if op == "state":
            shape, fill = data["shape"], data["attrs"].get("fill", 0.0)
            read = f"read_state(xp, state, {node!r}, {shape!r}, {fill!r}, F, dev)"
            return self.lines.append(f"    {var} = {read}{comment}")
        value = f"{'feeds' if op == 'input' else 'params'}[{node!r}]"
        self.lines.append(f"    {var} = xp.astype({value}, {type_source(data['dtype'], 'xp')}, copy=False){comment}")

    def _elementwise(self, node, data, args, var):
        expr, syms, printer = elementwise_printer(ArrayAPIEmitter, self.graph, node, args, "xp")
        temps, (reduced,) = sympy.cse([expr], symbols=sympy.numbered_symbols(f"{var}_t", real=True))
        value = printer.doprint(reduced)
        if not set(syms) <= expr.free_symbols:  # e.g. x*0 simplified to 0: keep the shape and dtype
            value = f"filled(xp, {value}, {printer.value_type}, {', '.join(args)})"
        lines = [f"{t} = {printer.doprint(v)}" for t, v in temps] + [f"{var} = {value}"]
        self.lines.append(f"    {lines[0]}{formula_comment(node, data, expr, syms, args)}")
        self.lines.extend(f"    {line}" for line in lines[1:])


def generate(graph, dtype: str = "float32", title: str = "", single: bool = True, mode: str = "value") -> str:
    """Python source of an Array API module with ``step(params, feeds, state) -> results``."""
    if importlib.util.find_spec("array_api_compat") is None:
        raise GraphError("target='array_api' needs array_api_compat: pip install 'graphgrad[array-api]'")
    printer = _Printer(graph)
    for node in step_order(graph):
        printer.node(node)
    body = "\n".join(printer.lines)
    return f'''"""{title or "graphgrad generated module"}, for the Array API standard.

Generated by graphgrad.  It runs unchanged on the arrays of any library array_api_compat wraps
(NumPy, PyTorch, JAX, Dask, CuPy) and returns arrays of that library; params and feeds must all
come from one library.  Nothing is written in place: updated params and optimizer state are new
arrays bound into the ``params`` and ``state`` dicts.
``run(params, **feeds)`` returns what the compiled function returned.
"""
import math

import numpy as np
from array_api_compat import array_namespace, device

TARGET = "array_api"
DTYPE = {dtype!r}
{interface(graph, single, mode)}

{kernel_sources()}

def step(params, feeds, state):
    arrays = [*(feeds[k] for k in INPUTS), *(params[k] for k in PARAMS)]
    xp, dev = array_namespace(*arrays), device(arrays[0])
    F = getattr(xp, DTYPE)
    results = {{}}
{body}
    return results


def new_state():
    """Optimizer state is created by the first call, in the caller's array library."""
    return {{}}


{RUN_SOURCE}'''
