"""The ``graphgrad`` command: demo, render, compile, bench."""
from __future__ import annotations

import argparse
import pathlib
import sys

from .demos import DEMOS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="graphgrad", description="See and compile backpropagation.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a built-in model on scikit-learn's digits")
    demo.add_argument("model", nargs="?", default="mlp", choices=sorted(DEMOS))
    demo.add_argument("-o", "--out", default="out", help="folder for the generated source and SVGs")
    args = parser.parse_args(argv)
    from .errors import GraphError

    try:
        if args.command == "demo":
            DEMOS[args.model](pathlib.Path(args.out))
    except (GraphError, FileNotFoundError, KeyError) as e:
        print(f"graphgrad: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
