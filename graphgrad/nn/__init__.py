"""Layers built from graph ops, so the chain rule, passes, code generation and rendering apply unchanged."""
from .layers import Dense, Layer

__all__ = ["Layer", "Dense"]
