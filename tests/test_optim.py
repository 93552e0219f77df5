"""Optimizers compiled into the step match their torch.optim counterparts over ten steps (float64)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphgrad as gg

STEPS = 10


def problem():
    g = gg.Graph("opt")
    x = g.input("x", (None, 3))
    t = g.input("t", (None, 2))
    h = gg.nn.Dense(4, activation="tanh", name="fc1")(x)
    loss = gg.mse(gg.nn.Dense(2, name="fc2")(h), t)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(5, 3)), "t": rng.normal(size=(5, 2))}
    params = {k: v.astype(np.float64) + 0.1 for k, v in g.init_params(seed=1).items()}  # biases nonzero too
    return g, loss, params, feeds


def torch_loss(torch, p, feeds):
    x, t = (torch.tensor(feeds[k]) for k in ("x", "t"))
    h = torch.tanh(x @ p["fc1.W"] + p["fc1.b"])
    return ((h @ p["fc2.W"] + p["fc2.b"] - t) ** 2).mean()


CASES = {
    "sgd": (lambda: gg.optim.SGD(lr=0.1), lambda o, ps: o.SGD(ps, lr=0.1)),
    "momentum": (lambda: gg.optim.Momentum(lr=0.1, momentum=0.9), lambda o, ps: o.SGD(ps, lr=0.1, momentum=0.9)),
    "nesterov": (lambda: gg.optim.Nesterov(lr=0.1, momentum=0.9),
                 lambda o, ps: o.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)),
    "adagrad": (lambda: gg.optim.AdaGrad(lr=0.1), lambda o, ps: o.Adagrad(ps, lr=0.1)),
    "rmsprop": (lambda: gg.optim.RMSProp(lr=0.01), lambda o, ps: o.RMSprop(ps, lr=0.01)),
    "adam": (lambda: gg.optim.Adam(lr=0.05), lambda o, ps: o.Adam(ps, lr=0.05)),
    "adamw": (lambda: gg.optim.AdamW(lr=0.05, weight_decay=0.1), lambda o, ps: o.AdamW(ps, lr=0.05, weight_decay=0.1)),
    "adam_l2": (lambda: gg.optim.Adam(lr=0.05, weight_decay=0.1),
                lambda o, ps: o.Adam(ps, lr=0.05, weight_decay=0.1)),
    "sgd_clipped": (lambda: gg.optim.SGD(lr=0.1, clip_norm=0.5), lambda o, ps: o.SGD(ps, lr=0.1)),
    "adam_clipped": (lambda: gg.optim.Adam(lr=0.05, clip_norm=0.3), lambda o, ps: o.Adam(ps, lr=0.05)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_matches_torch(case):
    make, make_torch = CASES[case]
    run_against_torch(make(), make_torch, STEPS)


def run_against_torch(optimizer, torch_optimizer, steps):
    """``steps`` compiled updates against torch.optim's on the same problem (clip_grad_norm_ first)."""
    torch = pytest.importorskip("torch")
    g, loss, params, feeds = problem()
    step = gg.compile(loss, optimizer=optimizer, dtype="float64")
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    topt = torch_optimizer(torch.optim, list(tp.values()))
    for i in range(steps):
        value = float(step(params, **feeds))
        topt.zero_grad()
        expected = torch_loss(torch, tp, feeds)
        expected.backward()
        if optimizer.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(tp.values()), optimizer.clip_norm)
        topt.step()
        assert value == pytest.approx(float(expected.detach()), rel=1e-6, abs=1e-12), f"loss at step {i}"
        for k, v in params.items():
            np.testing.assert_allclose(v, tp[k].detach().numpy(), rtol=1e-6, atol=1e-12, err_msg=f"{k} step {i}")


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]),
       lr=st.sampled_from([1.0, 0.3, 0.01]), clip_norm=st.sampled_from([None, 0.05, 1.0]),
       weight_decay=st.sampled_from([0.0, 0.1]), momentum=st.sampled_from([0.5, 0.99]),
       eps=st.sampled_from([1e-8, 0.1]), alpha=st.sampled_from([0.5, 0.9]), beta1=st.sampled_from([0.0, 0.5]),
       beta2=st.sampled_from([0.999, 0.5]), initial=st.sampled_from([0.0, 0.5]))
def test_hyper_parameters_match_torch(kind, lr, clip_norm, weight_decay, momentum, eps, alpha, beta1, beta2, initial):
    """Non-default settings of every optimizer, drawn, with and without clipping and weight decay."""
    common = {"lr": lr, "clip_norm": clip_norm, "weight_decay": weight_decay}
    theirs = {"lr": lr, "weight_decay": weight_decay}
    opt = gg.optim
    optimizer, torch_optimizer = {
        "sgd": (lambda: opt.SGD(**common), lambda o, ps: o.SGD(ps, **theirs)),
        "momentum": (lambda: opt.Momentum(momentum=momentum, **common),
                     lambda o, ps: o.SGD(ps, momentum=momentum, **theirs)),
        "nesterov": (lambda: opt.Nesterov(momentum=momentum, **common),
                     lambda o, ps: o.SGD(ps, momentum=momentum, nesterov=True, **theirs)),
        "adagrad": (lambda: opt.AdaGrad(eps=eps, initial_accumulator_value=initial, **common),
                    lambda o, ps: o.Adagrad(ps, eps=eps, initial_accumulator_value=initial, **theirs)),
        "rmsprop": (lambda: opt.RMSProp(alpha=alpha, eps=eps, **common),
                    lambda o, ps: o.RMSprop(ps, alpha=alpha, eps=eps, **theirs)),
        "adam": (lambda: opt.Adam(beta1=beta1, beta2=beta2, eps=eps, **common),
                 lambda o, ps: o.Adam(ps, betas=(beta1, beta2), eps=eps, **theirs)),
        "adamw": (lambda: opt.AdamW(beta1=beta1, beta2=beta2, eps=eps, **common),
                  lambda o, ps: o.AdamW(ps, betas=(beta1, beta2), eps=eps, **theirs)),
    }[kind]
    run_against_torch(optimizer(), torch_optimizer, steps=4)


def test_optimizer_state_is_per_compiled_step_and_float32_stays_float32():
    g, loss, params, feeds = problem()
    params = {k: v.astype(np.float32) for k, v in params.items()}
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=0.01))
    first = float(step(params, **{k: v.astype(np.float32) for k, v in feeds.items()}))
    assert all(v.dtype == np.float32 for v in params.values())
    assert all(step.state[k].dtype == np.float32 for k in step.module.STATE)  # optimizer slots
    second = float(step(params, **{k: v.astype(np.float32) for k, v in feeds.items()}))
    assert second < first


def test_clip_norm_bounds_the_update():
    g, loss, params, feeds = problem()
    before = {k: v.copy() for k, v in params.items()}
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=1.0, clip_norm=1e-3), dtype="float64")
    step(params, **feeds)
    moved = np.sqrt(sum(((params[k] - before[k]) ** 2).sum() for k in params))
    assert moved <= 1e-3 * (1 + 1e-6)


@pytest.mark.parametrize("clip_norm", [None, 10.0])
def test_sgd_l1_is_the_proximal_step(clip_norm):
    """SGD(l1=λ) is one ISTA step: the gradient step, then soft-thresholding by lr·λ (exact zeros)."""
    g, loss, params, feeds = problem()
    lr, lam = 0.1, 0.5
    value, grads = gg.compile(loss, wrt=g.params, dtype="float64")(params, **feeds)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=lr, l1=lam, clip_norm=clip_norm), dtype="float64")
    expected = {}
    for k, p in params.items():
        q = p - lr * grads[k]
        expected[k] = np.sign(q) * np.maximum(np.abs(q) - lr * lam, 0.0)
    step(params, **feeds)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], atol=1e-12, err_msg=k)
    zeros = sum(int((v == 0).sum()) for v in params.values())
    assert zeros == sum(int((v == 0).sum()) for v in expected.values()) > 0


def test_l1_proximal_steps_zero_the_irrelevant_weights_exactly():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 20))
    target = X[:, :3] @ np.array([3.0, -2.0, 1.5]) + 0.5 * rng.normal(size=200)
    g = gg.Graph("lasso")
    x, t = g.input("x", (None, 20), dtype="float64"), g.input("t", (None,), dtype="float64")
    w = g.param("w", (20, 1), init="zeros", dtype="float64")
    step = gg.compile(gg.mse((x @ w).reshape((None,)), t), optimizer=gg.optim.SGD(lr=0.01, l1=0.2))
    params = g.init_params()
    for _ in range(1000):
        step(params, x=X, t=target)
    assert np.all(params["w"][3:] == 0) and np.all(np.abs(params["w"][:3, 0]) > 1)


def test_defaults_are_torch_optim_defaults():
    """Momentum and Nesterov default to momentum 0.9 (torch SGD's 0 would be no momentum at all)."""
    torch = pytest.importorskip("torch")
    o, opt = torch.optim, gg.optim
    cases = [(opt.SGD(), "lr", o.SGD, "lr"), (opt.Momentum(), "lr", o.SGD, "lr"), (opt.Nesterov(), "lr", o.SGD, "lr"),
             (opt.AdaGrad(), "lr", o.Adagrad, "lr"), (opt.AdaGrad(), "eps", o.Adagrad, "eps"),
             (opt.AdaGrad(), "initial", o.Adagrad, "initial_accumulator_value"),
             (opt.RMSProp(), "lr", o.RMSprop, "lr"), (opt.RMSProp(), "alpha", o.RMSprop, "alpha"),
             (opt.RMSProp(), "eps", o.RMSprop, "eps"), (opt.Adam(), "lr", o.Adam, "lr"),
             (opt.Adam(), "eps", o.Adam, "eps"),
             (opt.AdamW(), "decoupled", o.AdamW, "weight_decay")]
    for ours, attr, theirs, key in cases:
        assert getattr(ours, attr) == theirs([torch.zeros(1, requires_grad=True)]).defaults[key], (ours, attr)
    assert (opt.Adam().beta1, opt.Adam().beta2) == o.Adam([torch.zeros(1, requires_grad=True)]).defaults["betas"]
