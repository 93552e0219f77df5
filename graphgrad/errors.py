"""The one error users see: a graph that cannot be built, compiled or fed."""


class GraphError(ValueError):
    """Raised for bad graphs and bad feeds; the message names the node, the op and the shapes."""
