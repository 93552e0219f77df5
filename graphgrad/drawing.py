"""`Drawing`, what `render` returns: a ``graphviz.Digraph`` that saves itself in the format its file name says."""
from __future__ import annotations

import os
import pathlib
import tempfile

import graphviz


class Drawing(graphviz.Digraph):
    """A ``graphviz.Digraph`` that writes itself to a path in the format its extension names."""

    FORMATS = ("svg", "png", "pdf", "dot")

    def save(self, filename=None, directory=None, *, skip_existing=False):
        """Write ``filename`` (.svg, .png, .pdf or .dot) atomically, so a reader never sees half a file;
        any other name gets the DOT source, as graphviz's ``save`` does.  Returns the path."""
        path = pathlib.Path(directory or "", filename or self.filename)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in self.FORMATS:
            return super().save(filename, directory=directory, skip_existing=skip_existing)
        data = self.source.encode() if fmt == "dot" else self.pipe(format=fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
            f.write(data)
        os.replace(f.name, path)
        return str(path)

    def render(self, filename=None, *args, **kwargs):
        """As graphviz's, but ``render("bptt.png")`` writes bptt.png (the format from the extension)."""
        suffix = pathlib.Path(str(filename)).suffix.lstrip(".").lower() if filename is not None else ""
        if suffix in self.FORMATS and not args and kwargs.get("format") in (None, suffix) and set(kwargs) <= {
                "directory", "cleanup", "format"}:
            return self.save(filename, kwargs.get("directory"))
        return super().render(filename, *args, **kwargs)
