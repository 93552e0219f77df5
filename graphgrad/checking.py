"""Execute: gradients checked against central finite differences in float64."""
from __future__ import annotations

import numpy as np

from .runtime import compile


def check_grad(loss, params: dict, feeds: dict, wrt=None, eps: float = 1e-6, rtol: float = 1e-5,
               atol: float = 1e-7, max_entries: int = 64, seed: int = 0) -> dict:
    """Compare every compiled gradient of ``loss`` with central differences, in float64.

    ``wrt`` defaults to the graph's params and may include inputs.  Large
    tensors are probed at ``max_entries`` random entries.  Raises
    ``AssertionError`` naming the worst entry; returns the worst relative error per tensor.
    """
    graph = loss.graph
    wrt = list(graph.params if wrt is None else wrt)
    values = {k: np.array(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
              for k, v in {**params, **feeds}.items()}
    f = compile(loss, wrt=wrt, dtype="float64")
    value_of = compile(loss, dtype="float64")
    param_names = set(f.module.PARAMS)

    def evaluate():
        p = {k: values[k] for k in param_names}
        return float(value_of(p, **{k: values[k] for k in f.module.INPUTS}))

    _, grads = f({k: values[k] for k in param_names}, **{k: values[k] for k in f.module.INPUTS})
    rng = np.random.default_rng(seed)
    report, worst = {}, (0.0, None)
    for t in wrt:
        name = t.node
        if name not in values:  # the loss does not depend on it: its gradient must be zero
            assert not np.any(grads[name]), f"gradient of {name!r} should be zero"
            continue
        x = values[name]
        flat = np.arange(x.size) if x.size <= max_entries else rng.choice(x.size, max_entries, replace=False)
        errors = []
        for i in flat:
            idx = np.unravel_index(i, x.shape)
            old = x[idx]
            x[idx] = old + eps
            up = evaluate()
            x[idx] = old - eps
            down = evaluate()
            x[idx] = old
            numeric, analytic = (up - down) / (2 * eps), float(grads[name][idx])
            # the difference quotient carries the loss's own rounding, amplified by 1/eps: a loss of 1e7
            # leaves ~1e-3 of noise in it, which no tolerance on the gradient alone accounts for
            noise = 64 * np.finfo(np.float64).eps * max(abs(up), abs(down)) / (2 * eps)
            err = abs(numeric - analytic) / (atol + noise + rtol * max(abs(numeric), abs(analytic)))
            errors.append(err)
            if err > worst[0]:
                worst = (err, f"{name}{list(idx)}: compiled {analytic:.10g}, finite differences {numeric:.10g}")
        report[name] = max(errors, default=0.0)
    if worst[0] > 1:
        raise AssertionError(f"gradient mismatch at {worst[1]}")
    return report
