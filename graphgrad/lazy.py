"""Modules imported on first use: SymPy (≈ 0.5 s) and graphviz are not needed to declare a graph,
so ``import graphgrad`` leaves them out (tests/test_imports.py checks it)."""
from __future__ import annotations

import importlib


class _Module:
    """Stands for a module until an attribute is read, then imports it and forwards to it."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        module = importlib.import_module(self._name)
        self.__dict__.update(module.__dict__)  # later reads skip __getattr__
        return getattr(module, attr)


def module(name: str):
    """``sympy = lazy.module("sympy")``: ``sympy.diff`` imports SymPy the first time it is read."""
    return _Module(name)
