"""Data-parallel training on a Dask LocalCluster: the same epoch as one process, even when a
worker dies in the middle of it."""
import os
import signal

import numpy as np
import pytest

import graphgrad as gg

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       worker_dashboard_address=None)
    with distributed.Client(cluster) as client:
        yield client
    cluster.close(timeout=20)


@pytest.fixture(autouse=True)
def no_hang():
    """A stuck cluster fails the test after a minute instead of hanging the suite."""
    def fail(*_):
        raise TimeoutError("distributed test took more than 60 s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _problem():
    g, loss, _ = gg.models.mlp(hidden=16)
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(72, 64)), "y": rng.integers(0, 10, 72)}
    params = {k: v.astype(np.float64) for k, v in g.init_params(seed=0).items()}
    return loss, data, params


def _train(client, epochs=1):
    loss, data, params = _problem()
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2), dtype="float64")
    history = gg.fit(step, params, data, epochs=epochs, batch_size=16, progress=False, client=client)
    return params, history


def test_one_epoch_equals_single_process_training(client):
    loss, data, expected = _problem()
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2), dtype="float64")
    local = gg.fit(step, expected, data, batch_size=16, progress=False)
    params, history = _train(client)
    assert history["loss"] == pytest.approx(local["loss"], rel=1e-9)
    for name, value in expected.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-6, atol=1e-9, err_msg=name)


class _CrashOnce(distributed.WorkerPlugin):
    """Kills its worker process the moment it starts its ``after``-th shard gradient; the marker
    file makes it happen once in the whole cluster (the nanny restarts the worker)."""

    def __init__(self, marker, after):
        self.marker, self.after = marker, after

    def setup(self, worker):
        self.started = 0

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "shard_gradient" in str(key):
            self.started += 1
            if self.started == self.after and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)


def test_a_worker_killed_mid_epoch_changes_nothing(client, tmp_path):
    expected, _ = _train(client)
    marker = tmp_path / "crashed"
    client.register_plugin(_CrashOnce(str(marker), after=3), name="crash-once")
    try:
        params, _ = _train(client)
    finally:
        client.unregister_worker_plugin("crash-once")
    assert marker.exists()  # a worker did die mid-epoch
    for name, value in expected.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-12, atol=1e-15, err_msg=name)


def test_the_tree_has_log2_levels(client):
    from graphgrad.distributed import tree_sum

    parts = [client.submit(lambda i: (float(i), {"w": np.full(2, float(i))}), i, pure=False) for i in range(5)]
    loss, grads = tree_sum(client, parts).result()
    assert loss == 10.0 and grads["w"].tolist() == [10.0, 10.0]
