"""Derive: SymPy views of the graph, for display and explanation."""
from __future__ import annotations

import re

import sympy

from .errors import GraphError
from .ir import Tensor
from .ops import get_op
from .ops.elementwise import node_formula


def _op_name(op) -> str:
    return op if isinstance(op, str) else getattr(op, "op", getattr(op, "__name__", str(op)))


def derivative(op, wrt: int = 0, **attrs) -> sympy.Expr:
    """The local derivative of an elementwise op as a SymPy expression.

    >>> import graphgrad as gg
    >>> gg.derivative(gg.sigmoid)
    (1 - sigmoid(x))*sigmoid(x)
    """
    name = _op_name(op)
    spec = get_op(name)
    if not spec.elementwise:
        raise GraphError(f"{name} is a structural op: its derivative is a vjp rule, not a formula")
    expr, syms = node_formula(name, spec.arity or 1, attrs)
    return sympy.diff(expr, syms[wrt])


def symbol_for(node: str) -> sympy.Symbol:
    """The SymPy symbol that stands for a node's value: its name made an identifier."""
    return sympy.Symbol(re.sub(r"\W", "_", node), real=True)


def formula(t: Tensor) -> sympy.Expr:
    """The SymPy expression of the elementwise subgraph ending at ``t``.

    Non-elementwise nodes (inputs, params, matmuls, ...) appear as symbols
    named after their nodes; scalar constants appear as numbers.
    """
    graph = t.graph
    memo: dict = {}

    def build(node):
        if node in memo:
            return memo[node]
        data = graph.nx.nodes[node]
        op = get_op(data["op"])
        if data["op"] == "const" and data["shape"] == ():
            result = sympy.sympify(data["attrs"]["value"])
        elif op.elementwise:
            args = graph.args(node)
            expr, syms = node_formula(data["op"], len(args), data["attrs"])
            result = expr.xreplace({s: build(a) for s, a in zip(syms, args)})
        else:
            result = symbol_for(node)
        memo[node] = result
        return result

    return build(t.node)
