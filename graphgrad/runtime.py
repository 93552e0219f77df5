"""Execute: ``compile()`` runs the pipeline declare -> derive -> optimise -> generate, and
`Compiled` validates feeds, runs the generated step and reports errors by node.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import linecache
import os
import pathlib
import platform
import re
import sys
import tempfile
import traceback

import numpy as np

from .autodiff import grad
from .errors import GraphError
from .ir import Tensor, canonical, shape_text
from .ops import get_op
from .ops.recurrent import unroll_scans
from .portable_kernels import host_dtype
from . import validate

_MODULES: dict = {}  # cache key -> loaded module, for this process


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("GRAPHGRAD_CACHE", pathlib.Path.home() / ".cache" / "graphgrad"))


def _code_version() -> str:
    if not hasattr(_code_version, "value"):
        h = hashlib.sha1()
        for path in sorted(pathlib.Path(__file__).parent.rglob("*.py")):
            h.update(path.read_bytes())
        _code_version.value = h.hexdigest()
    return _code_version.value


@functools.cache
def tune_allocator(threshold: int = 1 << 24) -> bool:
    """Let glibc keep freed blocks of up to ``threshold`` bytes (16 MB) in the heap; True where it did.

    glibc gives every freed block of 128 kB or more back to the OS at once, so the fresh arrays a
    compiled step's kernels return page-fault anew on every call (W4: about 1000 faults, 40 % of
    the step).  `compile` calls this once per process; it raises glibc's mmap and trim thresholds
    (``mallopt``), which a process may then hold on to up to 2 × ``threshold`` of freed memory.
    Elsewhere than glibc, or with ``GRAPHGRAD_TUNE_MALLOC=0`` in the environment, it does nothing.
    Saved modules never call it: a program running one may call it, or ``mallopt`` itself.
    """
    if os.environ.get("GRAPHGRAD_TUNE_MALLOC", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    mallopt = ctypes.CDLL(None).mallopt
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, threshold)) and bool(mallopt(m_trim_threshold, 2 * threshold))


def write_atomic(path, content) -> None:
    """Write ``content`` (text or bytes) to ``path`` so that readers see the old file or the whole new one,
    never a part: a temporary file beside it, synced, then renamed over it.  The file gets the mode a
    plain ``open`` would give it (the umask's), or keeps the mode of the file it replaces."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o22)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def _relevant_nodes(graph, outputs):
    import networkx as nx

    roots = [o.node for o in outputs] + [n for n, d in graph.nx.nodes(data=True) if d.get("op") == "assign"]
    return set(roots).union(*(nx.ancestors(graph.nx, r) for r in roots))


def _cache_key(graph, outputs, wrt, optimizer, training, dtype, check_finite, single, target="numpy") -> str:
    from .autodiff import topological_order

    h = hashlib.sha256(_code_version().encode())
    for node in topological_order(graph, _relevant_nodes(graph, outputs)):
        d = graph.nx.nodes[node]
        h.update(f"{node}|{d['op']}|{d['shape']}|{d['dtype']}|{canonical(d['attrs'])}|{graph.args(node)}\n".encode())
    h.update(repr(([o.node for o in outputs], [w.node for w in wrt or []], training, dtype, check_finite,
                   single, target)).encode())
    h.update(canonical(vars(optimizer) | {"class": type(optimizer).__name__} if optimizer else None).encode())
    return h.hexdigest()[:32]


def _load(key: str, source: str):
    """Import generated source from a real file, so tracebacks and ``inspect`` can show it."""
    name = f"graphgrad_step_{key}"
    try:
        path = cache_dir() / f"{key}.py"
        if not path.exists() or path.read_text() != source:
            write_atomic(path, source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except OSError:  # no writable cache: keep the source in linecache instead
        filename = f"<graphgrad {key}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module = type(sys)(name)
        module.__file__ = filename
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102
    module.SOURCE = source
    return module


def _load_cached(key: str):
    path = cache_dir() / f"{key}.py"
    if path.exists():
        try:
            return _load(key, path.read_text())
        except Exception:  # a damaged cache entry is rebuilt
            return None
    return None


def _wrt_tensors(graph, wrt):
    return [graph[w] if isinstance(w, str) else graph.as_tensor(w) for w in wrt]


def _build(graph, outputs, wrt, optimizer, training, dtype, check_finite, single, mode, target="numpy"):
    """declare -> derive -> optimise -> generate, on a copy of the user's graph."""
    # imported here: the passes and code generation work on SymPy expressions, and SymPy is not
    # imported until a graph is compiled (a cache hit never builds)
    from .codegen import generate
    from .passes import PASSES, REWRITES, dead_code, fuse_elementwise, optimise

    work = graph.copy()
    outs = [work.tensor(o.node) for o in outputs]
    for i, o in enumerate(outs):
        work.apply("output", [o], {"key": f"out:{i}"}, name=f"out_{i}")
    _keep_feasible_updates(work, outs, training)
    # stable forms first, so that the chain rule differentiates log_softmax, not log(softmax)
    work = optimise(work, training, passes=(dead_code, *REWRITES))
    if target == "array_api":  # the loop lowering has no Array API kernel: differentiate the unrolled cells
        work = unroll_scans(work)
    outs = [work.tensor(o.node) for o in outs]
    if wrt:
        for w in wrt:  # a param the outputs do not use was dropped as dead code: its gradient is zero
            if w.node not in work.nx:
                work.nx.add_node(w.node, **graph.nx.nodes[w.node])
        params = [work.tensor(w.node) for w in wrt]
        grads = grad(outs[0], params, seed=optimizer.gradient_scale() if optimizer else None)
        if optimizer is None:
            for p, g in zip(params, grads):
                work.apply("output", [g], {"key": f"grad:{p.node}"}, name=f"grad_out/{p.node}")
        else:
            optimizer.build(work, params, grads)
    derived = work.copy()  # before the passes: what `render` draws for a compiled step
    # without fusion every node keeps its own line, so check_finite can name the first bad one
    work = optimise(work, training, passes=[p for p in PASSES if not (check_finite and p is fuse_elementwise)])
    work.derived = derived
    kind = {"value": "forward", "grads": "forward + backward", "step": "training step"}[mode]
    if target == "array_api":
        from . import portable  # needs the [array-api] extra

        return portable.generate(work, dtype=dtype, single=single, mode=mode, title=f"graph {graph.name!r}: {kind}"), work
    return generate(work, dtype=dtype, check_finite=check_finite, single=single, mode=mode,
                    title=f"graph {graph.name!r}: {kind}"), work


def _keep_feasible_updates(work, outs, training):
    """Keep the graph's own state updates (running statistics) in training mode, when their inputs are fed."""
    kept = set(feasible_updates(work, outs, training))
    work.nx.remove_nodes_from([n for n in _param_updates(work) if n not in kept])


def _param_updates(graph):
    return [n for n, d in graph.nx.nodes(data=True) if d["op"] == "assign" and d["attrs"].get("target") == "params"]


def feasible_updates(graph, outs, training) -> list:
    """The ``assign`` nodes into params that a call computing ``outs`` runs: in training mode, those
    whose inputs are all fed."""
    import networkx as nx

    if not training:
        return []
    needed = {n for o in outs for n in nx.ancestors(graph.nx, o.node) | {o.node}}
    fed = {n for n in needed if graph.nx.nodes[n]["op"] == "input"}
    return [node for node in _param_updates(graph)
            if {a for a in nx.ancestors(graph.nx, node) if graph.nx.nodes[a]["op"] == "input"} <= fed]


def compile(outputs, wrt=None, optimizer=None, training=True, dtype=None, check_finite=None,
            target="numpy") -> "Compiled":
    """Compile outputs (a Tensor or a list) into one generated NumPy function.

    With ``wrt`` the call returns ``(outputs, grads)``, the gradients of the
    first output (a scalar) as a dict by name; with ``optimizer`` it updates
    the params in place and returns the outputs.  ``dtype="float64"`` computes
    in float64 whatever the declared dtypes.  A second compile of the same
    graph is served from a cache (in memory, then on disk).  ``check_finite=True`` checks every
    value as it is computed and raises a `GraphError` naming the first node that is not finite
    (unfused code, slower); its default comes from the environment, ``GRAPHGRAD_CHECK_FINITE=1``
    turning it on for every compile of a program, as a debugging switch.  ``target="array_api"``
    writes the step against the Array API standard instead: it runs on NumPy, PyTorch,
    JAX, Dask or CuPy arrays and returns arrays of the caller's library (the
    ``graphgrad[array-api]`` extra; see docs/scaling.md).

    >>> import graphgrad as gg, numpy as np
    >>> g = gg.Graph(); x = g.input("x", (None, 2)); w = g.param("w", (2, 1))
    >>> f = gg.compile(((x @ w) ** 2).mean(), wrt=[w])
    >>> value, grads = f({"w": np.ones((2, 1), np.float32)}, x=np.ones((3, 2), np.float32))
    >>> float(value), grads["w"].ravel().tolist()
    (4.0, [4.0, 4.0])
    """
    tune_allocator()
    if check_finite is None:
        check_finite = os.environ.get("GRAPHGRAD_CHECK_FINITE", "0") not in ("", "0")
    single = isinstance(outputs, Tensor)
    outputs = [outputs] if single else list(outputs)
    if not outputs:
        raise GraphError("compile needs at least one output")
    if not all(isinstance(o, Tensor) for o in outputs):
        raise GraphError(f"compile takes Tensors, got {[type(o).__name__ for o in outputs]}")
    graph = outputs[0].graph
    for o in outputs:
        graph.as_tensor(o)
        if o.node not in graph.nx:
            raise GraphError(f"output node {o.node!r} is no longer in graph {graph.name!r}")
    validate.check_ir(graph.nx, get_op, _relevant_nodes(graph, outputs))
    if optimizer is not None and wrt is None:
        wrt = graph.params
    wrt = _wrt_tensors(graph, wrt) if wrt is not None else None
    if wrt is not None and outputs[0].shape != ():
        raise GraphError(f"gradients need a scalar first output, but {outputs[0].op} node {outputs[0].node!r} "
                         f"has shape {outputs[0].shape}")
    mode = "step" if optimizer is not None else "grads" if wrt is not None else "value"
    if target not in ("numpy", "array_api") or target == "array_api" and check_finite:
        raise GraphError(f"target must be 'numpy' or 'array_api' (check_finite: 'numpy' only), got {target!r}")
    dtype = validate.dtype_name(dtype, "compile") if dtype else _default_dtype(graph)
    if not dtype.startswith("float"):
        raise GraphError(f"compile computes in float32 or float64, not {dtype}")
    key = _cache_key(graph, outputs, wrt, optimizer, training, dtype, check_finite, single, target)
    module = _MODULES.get(key) or _load_cached(key)
    work = None
    if module is None:
        source, work = _build(graph, outputs, wrt, optimizer, training, dtype, check_finite, single, mode, target)
        module = _load(key, source)
    _MODULES[key] = module
    compiled = Compiled(module, graph, work, outputs, optimizer)
    compiled.writes = ({w.node for w in wrt} if optimizer else set()) | \
        {graph.nx.nodes[n]["attrs"]["key"] for n in feasible_updates(graph, outputs, training)}
    compiled.cached = work is None  # served from the in-memory or on-disk cache
    compiled.training, compiled.dtype = training, dtype  # what a data-parallel fit compiles its gradients with
    # a cache hit skips the build; drawings rebuild the graphs on first use
    compiled._rebuild = lambda: _build(graph, outputs, wrt, optimizer, training, dtype, check_finite, single, mode,
                                       target)[1]
    return compiled


def _default_dtype(graph) -> str:
    dtypes = {d["dtype"] for _, d in graph.nx.nodes(data=True) if d["op"] in ("input", "param")}
    return "float64" if "float64" in dtypes else "float32"


class Compiled:
    """A compiled function: ``f(params, **feeds)``; ``.source`` is the generated code."""

    def __init__(self, module, graph, optimized, outputs, optimizer):
        self.module = module
        self.graph = graph
        self._optimized = optimized
        self.outputs = outputs
        self.optimizer = optimizer
        self.state = module.new_state()
        self.writes = set()  # the params a call writes in place (optimizer updates, running statistics)
        # what every call checks against, worked out once: a call's own cost is a step's overhead
        self._portable = getattr(module, "TARGET", "numpy") == "array_api"  # binds new arrays, writes none
        self._known_inputs = frozenset(t.node for t in graph.inputs)
        self._batched_inputs = [(name, shape.index(None)) for name, (shape, _) in module.INPUTS.items()
                                if None in shape]

    @property
    def source(self) -> str:
        return self.module.SOURCE

    @property
    def optimized_graph(self):
        """The graph after all passes (what the source was generated from); rebuilt on a cache hit."""
        if self._optimized is None and getattr(self, "_rebuild", None):
            self._optimized = self._rebuild()
        return self._optimized

    @property
    def derived_graph(self):
        """The graph before the passes: forward, chain rule and optimizer update, as `render` draws it."""
        return self.optimized_graph.derived

    def _repr_svg_(self):
        from .render import svg

        return svg(self)

    def __repr__(self):
        return f"<Compiled {self.module.MODE} of graph {self.graph.name!r}: {self.source.count(chr(10))} lines>"

    def _repr_html_(self):
        import html

        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer

            return highlight(self.source, PythonLexer(), HtmlFormatter(noclasses=True))
        except ImportError:
            return f"<pre>{html.escape(self.source)}</pre>"

    def save(self, path) -> None:
        """Write the generated module to ``path`` atomically; it imports numpy only."""
        write_atomic(path, self.source)

    def __call__(self, params, **feeds):
        portable = self._portable
        feeds = check_feeds(self.module.INPUTS, feeds, known=self._known_inputs, keep_library=portable)
        # every check before the step runs, so that a call applies all its updates or none
        params = check_params(self.module.PARAMS, params, writes=() if portable else self.writes,
                              keep_library=portable)
        empty = [name for name, axis in self._batched_inputs if feeds[name].shape[axis] == 0]
        if empty and self.module.MODE != "value":
            raise GraphError(f"empty batch: input {empty[0]!r} has batch size 0, and gradients (so training "
                             "steps) of a loss over no examples are undefined; skip the batch")
        try:
            with _quiet() if empty else contextlib.nullcontext():  # an empty forward is empty or NaN, as in PyTorch
                results = self.module.step(params, feeds, self.state)
        except FloatingPointError as e:
            raise GraphError(str(e)) from None
        except Exception as e:  # report the node, not a NumPy traceback into generated code
            raise GraphError(_runtime_message(e, self.module)) from e
        return self.module.unpack(results)


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _runtime_message(error, module) -> str:
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename == module.__file__ and frame.name == "step":
            # the statement's comment names its node: on its line, or the line above a long one
            for lineno in range(frame.lineno, 0, -1):
                line = linecache.getline(frame.filename, lineno)
                if line.startswith("def "):
                    break
                match = re.search(r"#\s*(\S+?):\s*(\w+)", line)
                if match:
                    return f"{match.group(2)} node {match.group(1)!r} failed: {type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"


def check_feeds(spec: dict, feeds: dict, known=(), keep_library=False) -> dict:
    """Validate feeds against the inputs' declared shapes and dtypes, before any generated code runs.

    Feeds for ``known`` inputs of the graph that this function does not use are ignored.
    ``keep_library``: arrays of any library are checked as they are, not converted to NumPy.
    """
    if feeds.keys() == spec.keys():
        missing = extra = ()
    else:
        missing, extra = sorted(set(spec) - set(feeds)), sorted(set(feeds) - set(spec) - set(known))
    if missing:
        raise GraphError(f"missing feed for input {missing[0]!r} (shape {shape_text(spec[missing[0]][0])}); "
                         f"the graph needs {sorted(spec)}")
    if extra:
        raise GraphError(f"unexpected feed {extra[0]!r}: the graph's inputs are {sorted(spec)}")
    batch = None
    checked = {}
    for name, (shape, dtype) in spec.items():
        value = _library_array(feeds[name], f"input {name!r}", keep_library)
        kind = host_dtype(value).kind
        if dtype.startswith(("int", "uint")) and kind not in "iu":
            raise GraphError(f"input {name!r} expects integers ({dtype}), got {value.dtype}")
        if value.ndim != len(shape) or any(d is not None and d != v for d, v in zip(shape, value.shape)):
            raise GraphError(f"input {name!r} expects shape {shape_text(shape)}, got {value.shape}")
        for d, v in zip(shape, value.shape):
            if d is None:
                if batch is not None and v != batch[1]:
                    raise GraphError(f"input {name!r} has batch size {v}, but input {batch[0]!r} has {batch[1]}")
                batch = batch or (name, v)
        checked[name] = value
    return checked


def _library_array(value, what, keep_library):
    """A feed or param as an array: any library's array as it is with ``keep_library``, else NumPy's."""
    if keep_library and hasattr(value, "dtype"):
        return value
    return validate.as_array(value, what)


def check_params(spec: dict, params: dict, writes=(), keep_library=False) -> dict:
    """Validate params against the declared shapes: real numbers of the right shape, and the ones in
    ``writes`` (updated in place by the call) writable float arrays."""
    if not isinstance(params, dict):
        raise GraphError(f"params must be a dict name -> array (graph.init_params() makes one), got "
                         f"{type(params).__name__}")
    for name, (shape, _) in spec.items():
        if name not in params:
            raise GraphError(f"params has no entry for param {name!r} (shape {shape_text(shape)}); "
                             "use graph.init_params() to make one")
        value = _library_array(params[name], f"param {name!r}", keep_library)
        if tuple(value.shape) != tuple(shape):
            raise GraphError(f"param {name!r} expects shape {shape_text(shape)}, got {value.shape}")
        if name in writes:
            array = params[name]
            if not isinstance(array, np.ndarray):
                raise GraphError(f"param {name!r} is updated in place, so it must be a NumPy array, got "
                                 f"{type(array).__name__}; nothing was updated")
            if array.dtype.kind != "f":
                raise GraphError(f"param {name!r} is updated in place, so it must hold floats, got {array.dtype}; "
                                 "nothing was updated")
            if not array.flags.writeable:
                raise GraphError(f"param {name!r} is updated in place but its array is read-only; nothing was "
                                 "updated")
    return params
