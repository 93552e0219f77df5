"""Formulas drawn as SVG by matplotlib's mathtext, so pages need no math script or web font."""
from __future__ import annotations

import hashlib
import io
import re

import sympy
from sympy.printing.latex import LatexPrinter


class MathtextPrinter(LatexPrinter):
    """SymPy's LaTeX in the subset mathtext draws: no environments, so cases become words."""

    def _print_Piecewise(self, expr):
        pieces = [f"{self._print(value)}\\ \\mathrm{{if}}\\ {self._print(cond)}" for value, cond in expr.args[:-1]]
        value, cond = expr.args[-1]
        last = self._print(value) + ("\\ \\mathrm{otherwise}" if cond == sympy.true else
                                     f"\\ \\mathrm{{if}}\\ {self._print(cond)}")
        return "\\left(" + ";\\ ".join([*pieces, last]) + "\\right)"

    def _print(self, expr, **kwargs):
        # graphgrad's branch primitive prints itself as a cases environment, which mathtext lacks
        return self._print_select(expr) if type(expr).__name__ == "select" else super()._print(expr, **kwargs)

    def _print_select(self, expr):
        c, a, b = (self._print(arg) for arg in expr.args)
        return f"\\left({a}\\ \\mathrm{{if}}\\ {c} > 0\\ \\mathrm{{else}}\\ {b}\\right)"


def latex(expr) -> str:
    """LaTeX for a SymPy expression (or a LaTeX string, unchanged) that mathtext can draw."""
    if isinstance(expr, str):
        return expr
    return MathtextPrinter({"mul_symbol": None}).doprint(expr)


def svg(tex: str, size: float = 13.0) -> tuple[bytes, float]:
    """The SVG of ``tex`` and its depth below the baseline in points (for vertical alignment)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import mathtext, rcParams
    from matplotlib.font_manager import FontProperties

    rcParams["svg.hashsalt"] = "graphgrad"  # stable ids, so equal formulas give equal files
    rcParams["mathtext.fontset"] = "cm"  # Computer Modern, as in a textbook; ships with matplotlib
    buffer = io.BytesIO()
    depth = mathtext.math_to_image(f"${tex}$", buffer, prop=FontProperties(size=size), dpi=72, format="svg")
    return buffer.getvalue(), float(depth)


def file_name(tex: str, display: bool) -> str:
    return hashlib.sha1(f"{display}{tex}".encode()).hexdigest()[:16] + ".svg"


SYMBOLS = {"partial": "∂", "sigma": "σ", "epsilon": "ε", "lambda": "λ", "alpha": "α", "mu": "μ", "rho": "ρ",
           "sum": "Σ", "prod": "∏", "leq": "≤", "geq": "≥", "odot": "⊙", "cdot": "·", "ldots": "…", "quad": " ",
           "leftarrow": "←", "Rightarrow": "⇒", "times": "×", "prime": "′", "pi": "π", "infty": "∞", "max": "max"}


def plain(tex: str) -> str:
    """A readable text version of a formula, for the image's alt text (screen readers, copy and paste)."""
    text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", tex)
    text = re.sub(r"\\([A-Za-z]+)", lambda m: SYMBOLS.get(m.group(1), "" if m.group(1) in (
        "left", "right", "mathrm", "operatorname", "text", "frac", "sqrt") else m.group(1)), text)
    text = re.sub(r"[{}\\]", "", text.replace("\\,", " ").replace("\\ ", " "))
    return re.sub(r"\s+", " ", text).strip()
