"""The ``graphgrad`` command: demo, render, compile, bench.

MODEL is a built-in model name (``graphgrad.models.MODELS``) or
``path/to/file.py:function`` returning the loss Tensor.  Errors print one
line and exit non-zero, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

from .errors import GraphError


class CommandError(Exception):
    """A user mistake on the command line: printed as one line."""


def load_model(spec: str):
    """The loss Tensor of a built-in model name or of ``file.py:function``."""
    from .ir import Tensor
    from .models import MODELS

    if ":" in spec or spec.endswith(".py"):
        path, _, name = spec.partition(":")
        if not pathlib.Path(path).is_file():
            raise CommandError(f"no such file: {path}")
        module_spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if not name or not hasattr(module, name):
            raise CommandError(f"{path} has no function {name!r}; write MODEL as {path}:function")
        result = getattr(module, name)()
    elif spec in MODELS:
        result = MODELS[spec]()
    else:
        raise CommandError(f"unknown model {spec!r}; built-in models: {', '.join(sorted(MODELS))}, "
                           "or path/to/file.py:function")
    loss = result[1] if isinstance(result, tuple) else result  # builders return (graph, loss, logits)
    if not isinstance(loss, Tensor):
        raise CommandError(f"{spec} returned {type(loss).__name__}, not a loss Tensor")
    return loss


def _demo(args):
    from .demos import DEMOS

    if args.model not in DEMOS:
        raise CommandError(f"unknown demo {args.model!r}; demos: {', '.join(sorted(DEMOS))}")
    DEMOS[args.model](pathlib.Path(args.out))


def _render(args):
    import graphviz

    from .render import render

    loss = load_model(args.model)
    options = {"expand": True} if args.expand else {}
    dot = render(loss, backward=args.backward, unroll=args.unroll or args.expand, collapse=args.collapse,
                 rankdir=args.rankdir, **options)
    out = args.output or f"{loss.graph.name}{'_backward' if args.backward else ''}.{args.format}"
    if pathlib.Path(out).suffix.lstrip(".").lower() not in dot.FORMATS:
        raise CommandError(f"cannot tell the format of {out!r}: name it .svg, .png, .pdf or .dot")
    try:
        dot.save(out)  # the format is the extension's
    except graphviz.ExecutableNotFound:
        raise CommandError("Graphviz's dot is not installed (apt-get install graphviz); "
                           "use -o FILE.dot for the DOT source") from None
    print(f"wrote {out}")


def _compile(args):
    from .runtime import compile

    loss = load_model(args.model)
    compile(loss, wrt=loss.graph.params).save(args.output)
    print(f"wrote {args.output}")


def _bench(args):
    # the benchmarks live beside the package in the repository (an editable install), or in the current folder
    for root in (str(pathlib.Path(__file__).resolve().parent.parent), str(pathlib.Path.cwd())):
        if root not in sys.path and (pathlib.Path(root) / "benchmarks" / "harness.py").exists():
            sys.path.append(root)
    try:
        from benchmarks import harness
    except ImportError:
        raise CommandError("the benchmarks package is not importable; run from the repository root") from None
    argv = (["--only", args.only] if args.only else []) + (["--json"] if args.json else [])
    for flag in ("systems", "processes", "steps", "warmup"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    argv += ["--small"] if args.small else []
    return harness.main(argv)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphgrad", description="See and compile backpropagation.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="train a built-in model on scikit-learn's digits")
    demo.add_argument("model", nargs="?", default="mlp", help="mlp, cnn or lstm")
    demo.add_argument("-o", "--out", default="out", help="folder for the generated source and SVGs")
    demo.set_defaults(run=_demo)
    render = sub.add_parser("render", help="draw a model's graph with Graphviz")
    render.add_argument("model", metavar="MODEL", help="built-in model name or path/to/file.py:function")
    render.add_argument("--backward", action="store_true", help="add the chain-rule (gradient) nodes")
    render.add_argument("--unroll", action="store_true", help="draw a recurrent net unrolled through time")
    render.add_argument("--expand", action="store_true", help="unrolled, with the last LSTM cell's gates drawn")
    render.add_argument("--collapse", action="store_true", help="draw each layer as one box")
    render.add_argument("--rankdir", default="TB", choices=["TB", "LR", "BT", "RL"])
    render.add_argument("--format", default="svg", choices=["svg", "png", "pdf", "dot"],
                        help="the format when no -o is given (default svg)")
    render.add_argument("-o", "--output", help="output file; its extension is the format: .svg, .png, .pdf, "
                        "or .dot for the source")
    render.set_defaults(run=_render)
    comp = sub.add_parser("compile", help="write forward + backward as a standalone NumPy module")
    comp.add_argument("model", metavar="MODEL", help="built-in model name or path/to/file.py:function")
    comp.add_argument("-o", "--output", required=True, help="the module to write, e.g. module.py")
    comp.set_defaults(run=_compile)
    bench = sub.add_parser("bench", help="run the benchmarks (benchmarks/harness.py)")
    bench.add_argument("--only", help="comma-separated workloads, e.g. W1,W2")
    bench.add_argument("--json", action="store_true", help="print JSON only")
    bench.add_argument("--systems", help="comma-separated systems (default: all registered)")
    bench.add_argument("--processes", type=int, help="fresh processes per workload (default 3)")
    bench.add_argument("--steps", type=int, help="timed steps (default 20; W3 10)")
    bench.add_argument("--warmup", type=int, help="untimed steps first (default 3)")
    bench.add_argument("--small", action="store_true", help="tiny configurations (a smoke test)")
    bench.set_defaults(run=_bench)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (CommandError, GraphError, OSError) as e:
        print(f"graphgrad: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a user's model file may raise anything: one line, not a traceback
        print(f"graphgrad: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
