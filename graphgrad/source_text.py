"""The text side of code generation: the helper functions a generated module calls, pasted with
what they call in turn, and statements fitted under the line width people read.
"""
from __future__ import annotations

import functools
import inspect
import re

WIDTH = 119  # the longest line a generated module has


# -- helpers: only the definitions a module calls, with what they call ----------------------------------
# a top-level definition starts a line: ``def name``, ``class name`` or ``name =``
_DEFINITION = re.compile(r"(?:def|class) (\w+)|(\w+)\s*(?::[^=]*)?=(?!=)")


@functools.lru_cache(maxsize=None)
def definitions(module) -> dict:
    """Top-level name -> (position, source, names it reads) of every function, class and
    assignment of a helper module (its docstring, imports and comments between them left out).

    A definition runs from its first line to the next line that starts in column 0 (a closing
    bracket aside); reading the lines is quicker than parsing the module.
    """
    found = {}
    lines = inspect.getsource(module).splitlines()
    starts = [(i, m) for i, line in enumerate(lines) if (m := _DEFINITION.match(line))]
    for position, (first, match) in enumerate(starts):
        last = first + 1
        while last < len(lines) and (not lines[last] or lines[last][0] in " \t)]}"):
            last += 1
        text = "\n".join(lines[first:last]).rstrip()
        name = match.group(1) or match.group(2)
        value = vars(module).get(name)
        code = value if inspect.isfunction(value) or inspect.isclass(value) else compile(text, module.__name__, "exec")
        found[name] = (position, text, frozenset(_names_read(code)))
    return found


def _names_read(thing):
    """The global and attribute names a function, class or code object reads (from its byte code,
    which is quicker than walking syntax trees), nested functions and methods included."""
    if inspect.isclass(thing):
        return {n for member in vars(thing).values() if inspect.isfunction(member) for n in _names_read(member)}
    code = thing.__code__ if inspect.isfunction(thing) else thing
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _names_read(const)
    return names


def _resolve(module, name, modules):
    """(module, name) of the definition ``name`` means inside ``module``: its own, or one it imports
    from another helper module; None for numpy, builtins and locals."""
    if name in definitions(module):
        return module, name
    value = vars(module).get(name)
    home = inspect.getmodule(value) if callable(value) else None
    if home in modules and getattr(value, "__name__", None) in definitions(home):
        return home, value.__name__
    return None


def called_helpers(modules, code: str) -> str:
    """The source of the definitions of ``modules`` that ``code`` calls, with everything they
    read in turn, each module's in its own order under a heading."""
    modules = sorted(set(modules), key=lambda m: m.__name__)
    used = _names_read(compile(code, "<step>", "exec"))
    stack = [found for m in modules for name in used if (found := _resolve(m, name, modules)) == (m, name)]
    needed = set()
    while stack:
        module, name = stack.pop()
        if (module, name) in needed:
            continue
        needed.add((module, name))
        for read in definitions(module)[name][2]:
            found = _resolve(module, read, modules)
            if found:
                stack.append(found)
    parts = []
    for module in modules:
        pieces = sorted({definitions(module)[name][:2] for m, name in needed if m is module})
        if pieces:
            body = "\n\n\n".join(text for _, text in pieces)
            parts.append(f"# ---- helpers from {module.__name__} ----\n{body}\n")
    return "\n\n".join(parts)


# -- fitting statements under the width -------------------------------------------------------------------
_OPEN, _CLOSE = "([{", ")]}"


def _depths(code):
    """Per character: its bracket depth, or None inside a string literal."""
    depths, depth, quote, i = [], 0, None, 0
    while i < len(code):
        ch = code[i]
        if quote:
            depths.append(None)
            if ch == "\\":
                depths.append(None)
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            depths.append(None)
        else:
            depth -= ch in _CLOSE
            depths.append(depth)
            depth += ch in _OPEN
        i += 1
    return depths


def split_comment(line: str):
    """(code, comment) of a source line: the comment is what follows a ``#`` outside strings, or None."""
    for i, depth in enumerate(_depths(line)):
        if depth is not None and line[i] == "#":
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), None


def fit(line: str, width: int = WIDTH) -> list:
    """A generated statement as lines of at most ``width`` characters: a trailing comment that does
    not fit goes on its own line above (shortened to fit), long code breaks inside its brackets."""
    if len(line) <= width:
        return [line]
    code, comment = split_comment(line)
    indent = code[:len(code) - len(code.lstrip())]
    lines = []
    if comment is not None:
        text = f"{indent}# {comment}"
        lines.append(text if len(text) <= width else text[:width - 3] + "...")
    if code.strip():
        lines += _wrap(code.strip(), indent, width)
    return lines


def _wrap(code, indent, width, inside=False):
    """``code`` in lines of at most ``width``; ``inside``: it sits within brackets, so it may break
    between its items, terms or factors, else only inside a bracket pair of its own."""
    if len(indent) + len(code) <= width:
        return [indent + code]
    if inside:
        pieces, joiner = _pieces(code)
        if len(pieces) > 1:
            return _pack(pieces, joiner, indent, width)
    elif code.startswith("del "):
        return _wrap_del(code[4:].split(", "), indent, width)
    else:
        code = _bracketed_right_side(code, width - len(indent))
    group = _widest_group(code)
    if group is None:
        return [indent + code]  # nothing to break inside: left long
    start, stop = group
    head, body, tail = code[:start + 1], code[start + 1:stop], code[stop:]
    lines = [indent + head] + _wrap(body, indent + "    ", width, inside=True)
    if len(lines[-1]) + len(tail) <= width:
        lines[-1] += tail
    else:
        lines += _wrap(tail, indent, width, inside=True)
    return lines


def _pack(pieces, joiner, indent, width):
    """Pieces joined greedily into lines; a piece too long for a line is wrapped on its own."""
    lines, joinable = [], False  # joinable: the last line holds whole pieces only
    for piece in pieces:
        if joinable and len(lines[-1]) + len(joiner) + len(piece) <= width:
            lines[-1] += joiner + piece
            continue
        wrapped = _wrap(piece, indent, width, inside=True)
        lines += wrapped
        joinable = len(wrapped) == 1
    return lines


def _wrap_del(names, indent, width):
    lines = [f"{indent}del {names[0]}"]
    for name in names[1:]:
        if len(lines[-1]) + 2 + len(name) <= width:
            lines[-1] += f", {name}"
        else:
            lines.append(f"{indent}del {name}")
    return lines


def _bracketed_right_side(code, room):
    """``lhs = rhs`` as ``lhs = (rhs)`` where rhs is not one call or bracket that can break inside
    (a sum, an indexed call) or where breaking inside would leave a first line longer than ``room``."""
    depths = _depths(code)
    equals = next((i for i in range(len(code)) if depths[i] == 0 and code.startswith(" = ", i)), None)
    if equals is None:
        return code
    lhs, rhs = code[:equals], code[equals + 3:]
    group = _widest_group(rhs)
    one_call = (group is not None and group[1] == len(rhs) - 1
                and re.fullmatch(r"[\w.]*", rhs[:group[0]]) is not None)
    if one_call and len(lhs) + 3 + group[0] + 1 <= room:
        return code
    return f"{lhs} = ({rhs})"


def _widest_group(code):
    """(open, close) of the widest bracket pair at depth 0, or None."""
    groups, start = [], None
    for i, (ch, depth) in enumerate(zip(code, _depths(code))):
        if depth == 0 and ch in _OPEN:
            start = i
        elif depth == 0 and ch in _CLOSE and start is not None:
            groups.append((start, i))
    return max(groups, key=lambda g: g[1] - g[0], default=None)


def _pieces(code):
    """``code`` cut at the top level: after each comma, else before each `` + `` and `` - ``, else
    before each ``*`` and ``/``; with the text that joins the pieces again on one line."""
    depths = _depths(code)
    top = [i for i in range(len(code)) if depths[i] == 0]
    for cuts, joiner in (([i + 1 for i in top if code[i] == ","], " "),
                         ([i + 1 for i in top if re.match(r" [+-] ", code[i:i + 3])], " "),
                         ([i for i in top if i and code[i] in "*/" and code[i - 1] not in "*/ "
                           and code[i + 1:i + 2] not in ("*", "/")], "")):
        edges = [0] + cuts + [len(code)]
        pieces = [code[a:b].strip() for a, b in zip(edges, edges[1:]) if code[a:b].strip()]
        if len(pieces) > 1:
            return pieces, joiner
    return [code], ""
