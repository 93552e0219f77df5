"""The numbers of docs/scaling.md: the Array API target per library, and data-parallel fit on a
2-worker Dask LocalCluster against one process.

    python benchmarks/scaling.py          # about two minutes

Times are medians of repeated steps on this machine; the ratios measured in one run are the figure.
"""
import statistics
import time

import numpy as np

import graphgrad as gg


def median_seconds(run, repeats=5, warmup=2):
    """Median wall seconds of ``run()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def array_api_table(batch=64):
    import torch
    import jax
    import dask
    import dask.array as da

    torch.set_num_threads(1)
    jax.config.update("jax_enable_x64", False)
    libraries = {
        "numpy": (np.asarray, lambda out: out),
        "torch": (torch.from_numpy, lambda out: out),
        "jax": (jax.numpy.asarray, lambda out: jax.block_until_ready(out)),
        "dask": (lambda a: da.from_array(a, chunks=-1), lambda out: dask.compute(out)),
    }
    rows = []
    for name, build in {"mlp": lambda: gg.models.mlp(hidden=256), "cnn": lambda: gg.models.cnn()}.items():
        g, loss, _ = build()
        rng = np.random.default_rng(0)
        feeds = {t.name: (rng.integers(0, 10, (batch,)) if t.dtype.startswith("int")
                          else rng.normal(size=(batch,) + t.shape[1:]).astype(np.float32)) for t in g.inputs}
        params = g.init_params(seed=0)
        grads = gg.compile(loss, wrt=g.params)
        row = {"model": name, "numpy target": median_seconds(lambda: grads(params, **feeds))}
        portable = gg.compile(loss, wrt=g.params, target="array_api")
        for lib, (to, finish) in libraries.items():
            p, f = {k: to(v) for k, v in params.items()}, {k: to(v) for k, v in feeds.items()}
            row[lib] = median_seconds(lambda: finish(portable(p, **f)))
        rows.append(row)
    return rows


def distributed_table():
    from distributed import Client, LocalCluster

    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        for label, hidden, batch, n in (("tiny MLP (overhead)", 16, 32, 1024), ("MLP 64-1024-10", 1024, 512, 8192),
                                        ("MLP 64-2048-10", 2048, 4096, 32768)):
            g, loss, _ = gg.models.mlp(hidden=hidden)
            rng = np.random.default_rng(0)
            data = {"x": rng.normal(size=(n, 64)).astype(np.float32), "y": rng.integers(0, 10, n)}
            steps = -(-n // batch)
            row = {"workload": label, "batch": batch, "steps": steps}
            for where, kwargs in (("one process", {}), ("2 workers", {"client": client})):
                params = g.init_params(seed=0)
                step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3))
                gg.fit(step, params, data, batch_size=batch, progress=False, **kwargs)  # warm: compile, ship, load
                start = time.perf_counter()
                gg.fit(step, params, data, batch_size=batch, progress=False, **kwargs)
                row[where] = (time.perf_counter() - start) / steps
            rows.append(row)
    return rows


def main():
    for row in array_api_table():
        print(" | ".join(f"{k}: {v * 1e3:.1f} ms" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()))
    for row in distributed_table():
        print(" | ".join(f"{k}: {v * 1e3:.1f} ms/step" if isinstance(v, float) else f"{k}: {v}"
                         for k, v in row.items()),
              f"| speed-up {row['one process'] / row['2 workers']:.2f}x")


if __name__ == "__main__":
    main()
