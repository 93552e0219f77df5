"""The command line the examples share: ``--out FOLDER`` (default: ./out of the current directory)
for those that write files, and ``--quick`` for a small, fast run."""
import argparse
import inspect


def run(main, doc):
    parser = argparse.ArgumentParser(description=doc.strip().split("\n\n")[0])
    if "out" in inspect.signature(main).parameters:
        parser.add_argument("--out", default="out", help="folder for the files written (default: ./out)")
    parser.add_argument("--quick", action="store_true", help="a small, fast version (as the tests run it)")
    main(**vars(parser.parse_args()))
