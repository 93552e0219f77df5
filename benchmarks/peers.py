"""The benchmark workloads in the frameworks a user would pick instead.

Every peer is built from a params dict (it copies the arrays, so the caller's
dict is untouched) and the data dict of ``reference.make_workload`` and
exposes

- ``step() -> float``: forward + backward + plain SGD (lr 0.01); returns the
  loss before the update, as a Python float (so the work is finished);
- ``loss() -> float``: forward only at the current params;
- ``loss_and_grads() -> (float, {name: np.ndarray})`` (PyTorch only; the
  tests use it in float64 to check the NumPy references).

Systems (name -> workloads):

- ``torch``      PyTorch eager on the CPU, ``torch.set_num_threads(2)``,
                 W1..W5 (W3 with the fused ``nn.LSTM``);
- ``torch_cell`` W3 only: a Python loop over ``nn.LSTMCell``;
- ``jax``        ``jax.jit`` of the whole step (W3 with ``lax.scan``), when
                 jax is importable;
- ``pytensor``   a compiled ``pytensor.function`` with SGD updates, when
                 pytensor is importable (PyTensor 3 has no NN convolution
                 op: convolutions are im2col by shifted slices + tensordot).

``available()`` lists the (system, workload) pairs that can be built here;
``factory(system, workload)`` returns the ``(params, data) -> peer`` callable.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .reference import LR, BN_EPS


def _have(mod):
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------
# PyTorch eager
# --------------------------------------------------------------------------

def _torch():
    import torch
    if torch.get_num_threads() != 2:
        torch.set_num_threads(2)
    return torch


def _torch_forward(wl, P, x, y, cell_mod=None, lstm_mod=None):
    """The loss tensor of workload ``wl`` with params ``P`` (name -> tensor)."""
    import torch
    import torch.nn.functional as F
    if wl == "W1":
        h, k = x, 1
        while f"fc{k}.W" in P:
            h = torch.addmm(P[f"fc{k}.b"], h, P[f"fc{k}.W"])
            if f"fc{k + 1}.W" in P:
                h = torch.relu(h)
            k += 1
        return F.cross_entropy(h, y)
    if wl == "W2":
        h = F.max_pool2d(torch.relu(F.conv2d(x, P["conv1.W"], P["conv1.b"], padding=1)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, P["conv2.W"], P["conv2.b"], padding=1)), 2)
        logits = torch.addmm(P["fc.b"], h.flatten(1), P["fc.W"])
        return F.cross_entropy(logits, y)
    if wl == "W3":
        if cell_mod is not None:
            B, T, _ = x.shape
            H = cell_mod.hidden_size
            h = x.new_zeros(B, H)
            c = x.new_zeros(B, H)
            for t in range(T):
                h, c = cell_mod(x[:, t], (h, c))
        else:
            out, _ = lstm_mod(x)
            h = out[:, -1]
        logits = torch.addmm(P["fc.b"], h, P["fc.W"])
        return F.cross_entropy(logits, y)
    if wl == "W4":
        def bn(z, k):
            return F.batch_norm(z, None, None, P[f"bn{k}.gamma"], P[f"bn{k}.beta"],
                                training=True, eps=BN_EPS)
        h = torch.relu(bn(F.conv2d(x, P["conv1.W"]), 1))
        h = torch.relu(bn(F.conv2d(h, P["conv2.W"], padding=1), 2))
        h = torch.relu(bn(F.conv2d(h, P["conv3.W"]), 3) + x)
        return (h * h).mean()
    if wl == "W5":
        def conv(h, n):
            return torch.relu(F.conv2d(h, P[n + ".W"], P[n + ".b"], padding=1))
        e1 = conv(x, "enc1")
        e2 = conv(F.max_pool2d(e1, 2), "enc2")
        e3 = conv(F.max_pool2d(e2, 2), "enc3")
        u2 = F.conv_transpose2d(e3, P["up2.W"], P["up2.b"], stride=2)
        d2 = conv(torch.cat([e2, u2], 1), "dec2")
        u1 = F.conv_transpose2d(d2, P["up1.W"], P["up1.b"], stride=2)
        d1 = conv(torch.cat([e1, u1], 1), "dec1")
        z = F.conv2d(d1, P["out.W"], P["out.b"])
        return F.binary_cross_entropy_with_logits(z, y)
    raise KeyError(wl)


class TorchPeer:
    """PyTorch eager.  ``cell=True`` (W3 only) loops over ``nn.LSTMCell``."""

    def __init__(self, wl, params, data, cell=False):
        torch = _torch()
        self.torch = torch
        self.wl = wl
        dt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
            next(iter(params.values())).dtype]
        self.x = torch.from_numpy(np.array(data["x"], dtype=next(iter(params.values())).dtype))
        self.y = None
        if "y" in data:
            y = np.array(data["y"])
            self.y = torch.from_numpy(y.astype(params[next(iter(params))].dtype)
                                      if y.dtype.kind == "f" else y.astype(np.int64))
        self.P = {}
        self.lstm = self.cell = None
        for k, v in params.items():
            if not k.startswith("lstm."):
                self.P[k] = torch.tensor(np.array(v), dtype=dt, requires_grad=True)
        if wl == "W3":
            I, H = params["lstm.W_ih"].shape[1], params["lstm.W_hh"].shape[1]
            if cell:
                self.cell = torch.nn.LSTMCell(I, H, dtype=dt)
                names = {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
                mod = self.cell
            else:
                self.lstm = torch.nn.LSTM(I, H, batch_first=True, dtype=dt)
                names = {"W_ih": "weight_ih_l0", "W_hh": "weight_hh_l0",
                         "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}
                mod = self.lstm
            with torch.no_grad():
                for short, attr in names.items():
                    prm = getattr(mod, attr)
                    prm.copy_(torch.from_numpy(np.array(params["lstm." + short])))
                    self.P["lstm." + short] = prm
        self.plist = list(self.P.values())

    def _loss(self):
        return _torch_forward(self.wl, self.P, self.x, self.y, self.cell, self.lstm)

    def step(self):
        torch = self.torch
        loss = self._loss()
        loss.backward()
        with torch.no_grad():
            grads = [p.grad for p in self.plist]
            torch._foreach_add_(self.plist, grads, alpha=-LR)
        for p in self.plist:
            p.grad = None
        return loss.item()

    def loss(self):
        with self.torch.no_grad():
            return self._loss().item()

    def loss_and_grads(self):
        loss = self._loss()
        grads = self.torch.autograd.grad(loss, self.plist)
        return loss.item(), {k: g.detach().numpy().copy() for k, g in zip(self.P, grads)}


# --------------------------------------------------------------------------
# JAX jit
# --------------------------------------------------------------------------

def _jax_loss_fn(wl):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, W, b=None, pad=1):
        y = lax.conv_general_dilated(x, W, (1, 1), [(pad, pad), (pad, pad)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y if b is None else y + b[None, :, None, None]

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def up(x, W, b):  # ConvTranspose2d kernel 2 stride 2, W (in, out, 2, 2)
        N, C, H, Wd = x.shape
        y = jnp.einsum("nchw,coij->nohiwj", x, W).reshape(N, W.shape[1], 2 * H, 2 * Wd)
        return y + b[None, :, None, None]

    def ce(logits, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    relu = jax.nn.relu
    if wl == "W1":
        def f(P, x, y):
            h, k = x, 1
            while f"fc{k}.W" in P:
                h = h @ P[f"fc{k}.W"] + P[f"fc{k}.b"]
                if f"fc{k + 1}.W" in P:
                    h = relu(h)
                k += 1
            return ce(h, y)
    elif wl == "W2":
        def f(P, x, y):
            h = pool(relu(conv(x, P["conv1.W"], P["conv1.b"])))
            h = pool(relu(conv(h, P["conv2.W"], P["conv2.b"])))
            return ce(h.reshape(h.shape[0], -1) @ P["fc.W"] + P["fc.b"], y)
    elif wl == "W3":
        def f(P, x, y):
            B = x.shape[0]
            H = P["lstm.W_hh"].shape[1]
            xw = jnp.einsum("bti,gi->tbg", x, P["lstm.W_ih"]) + P["lstm.b_ih"] + P["lstm.b_hh"]

            def cell(carry, xt):
                h, c = carry
                g = xt + h @ P["lstm.W_hh"].T
                i, fg, gg, o = jnp.split(g, 4, axis=1)
                c = jax.nn.sigmoid(fg) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), None

            z = jnp.zeros((B, H), x.dtype)
            (h, _), _ = lax.scan(cell, (z, z), xw)
            return ce(h @ P["fc.W"] + P["fc.b"], y)
    elif wl == "W4":
        def bn(z, k, P):
            m = z.mean((0, 2, 3), keepdims=True)
            v = ((z - m) ** 2).mean((0, 2, 3), keepdims=True)
            return ((z - m) * lax.rsqrt(v + BN_EPS) * P[f"bn{k}.gamma"][None, :, None, None]
                    + P[f"bn{k}.beta"][None, :, None, None])

        def f(P, x, y=None):
            h = relu(bn(conv(x, P["conv1.W"], pad=0), 1, P))
            h = relu(bn(conv(h, P["conv2.W"]), 2, P))
            h = relu(bn(conv(h, P["conv3.W"], pad=0), 3, P) + x)
            return jnp.mean(h * h)
    elif wl == "W5":
        def f(P, x, y):
            def c3(h, n):
                return relu(conv(h, P[n + ".W"], P[n + ".b"]))
            e1 = c3(x, "enc1")
            e2 = c3(pool(e1), "enc2")
            e3 = c3(pool(e2), "enc3")
            d2 = c3(jnp.concatenate([e2, up(e3, P["up2.W"], P["up2.b"])], 1), "dec2")
            d1 = c3(jnp.concatenate([e1, up(d2, P["up1.W"], P["up1.b"])], 1), "dec1")
            z = conv(d1, P["out.W"], P["out.b"], pad=0)
            return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
    else:
        raise KeyError(wl)
    return f


class JaxPeer:
    """``jax.jit`` of loss, gradient and the SGD update in one function."""

    memory_measurable = False  # XLA's buffers are invisible to tracemalloc

    def __init__(self, wl, params, data):
        import jax
        import jax.numpy as jnp
        f = _jax_loss_fn(wl)
        self.P = {k: jnp.array(np.array(v)) for k, v in params.items()}
        self.x = jnp.array(data["x"])
        self.y = jnp.array(data["y"]) if "y" in data else None
        if self.y is not None and self.y.dtype.kind == "i":
            self.y = self.y.astype(jnp.int32)

        def step(P, x, y):
            loss, g = jax.value_and_grad(f)(P, x, y)
            return jax.tree_util.tree_map(lambda p, d: p - LR * d, P, g), loss

        self._step = jax.jit(step, donate_argnums=0)
        self._loss = jax.jit(f)

    def step(self):
        self.P, loss = self._step(self.P, self.x, self.y)
        return float(loss)

    def loss(self):
        return float(self._loss(self.P, self.x, self.y))


# --------------------------------------------------------------------------
# PyTensor
# --------------------------------------------------------------------------

def _pt_graph(wl, P, x, y, shapes):
    """The symbolic loss of workload ``wl`` (NCHW, PyTorch layouts)."""
    import pytensor.tensor as pt

    def conv(h, W, b=None, pad=1, wshape=None):
        # PyTensor 3 has no NN convolution op: im2col by shifted slices of a
        # zero-padded copy, then one tensordot (cross-correlation, as PyTorch)
        O, C, kh, kw = wshape
        N, _, H, Wd = h.shape
        if kh == 1 and pad == 0:
            z = pt.tensordot(h, W.reshape((O, C)), axes=[[1], [1]])       # (N, H, W, O)
        else:
            hp = pt.zeros((N, C, H + 2 * pad, Wd + 2 * pad), dtype=h.dtype)
            hp = pt.set_subtensor(hp[:, :, pad:pad + H, pad:pad + Wd], h)
            cols = pt.stack([hp[:, :, i:i + H, j:j + Wd] for i in range(kh) for j in range(kw)],
                            axis=2)                                           # (N, C, k*k, H, W)
            z = pt.tensordot(cols, W.reshape((O, C, kh * kw)), axes=[[1, 2], [1, 2]])
        z = z.dimshuffle(0, 3, 1, 2)
        return z if b is None else z + b.dimshuffle("x", 0, "x", "x")

    def pool(h):
        N, C, H, Wd = h.shape
        return h.reshape((N, C, H // 2, 2, Wd // 2, 2)).max(axis=(3, 5))

    def up(h, W, b):
        N, C, H, Wd = h.shape
        O = W.shape[1]
        z = pt.tensordot(h, W, axes=[[1], [0]])          # (N, H, W, O, 2, 2)
        z = z.dimshuffle(0, 3, 1, 4, 2, 5).reshape((N, O, 2 * H, 2 * Wd))
        return z + b.dimshuffle("x", 0, "x", "x")

    def ce(logits, y):
        return -pt.mean(pt.special.log_softmax(logits, axis=1)[pt.arange(y.shape[0]), y])

    relu = pt.maximum
    if wl == "W1":
        h, k = x, 1
        while f"fc{k}.W" in P:
            h = pt.dot(h, P[f"fc{k}.W"]) + P[f"fc{k}.b"]
            if f"fc{k + 1}.W" in P:
                h = relu(h, 0)
            k += 1
        return ce(h, y)
    if wl == "W2":
        h = pool(relu(conv(x, P["conv1.W"], P["conv1.b"], wshape=shapes["conv1.W"]), 0))
        h = pool(relu(conv(h, P["conv2.W"], P["conv2.b"], wshape=shapes["conv2.W"]), 0))
        return ce(pt.dot(h.flatten(2), P["fc.W"]) + P["fc.b"], y)
    if wl == "W3":
        import pytensor
        H = shapes["lstm.W_hh"][1]
        xw = pt.tensordot(x.dimshuffle(1, 0, 2), P["lstm.W_ih"].T, axes=1) + P["lstm.b_ih"] + P["lstm.b_hh"]
        sig = pt.sigmoid

        def cell(xt, h, c, Whh):
            g = xt + pt.dot(h, Whh.T)
            c2 = sig(g[:, H:2 * H]) * c + sig(g[:, :H]) * pt.tanh(g[:, 2 * H:3 * H])
            return sig(g[:, 3 * H:]) * pt.tanh(c2), c2

        z = pt.zeros((x.shape[0], H), dtype=x.dtype)
        (hs, _), _ = pytensor.scan(cell, sequences=xw, outputs_info=[z, z],
                                   non_sequences=[P["lstm.W_hh"]], strict=True)
        return ce(pt.dot(hs[-1], P["fc.W"]) + P["fc.b"], y)
    if wl == "W4":
        def bn(z, k):
            m = z.mean(axis=(0, 2, 3), keepdims=True)
            v = ((z - m) ** 2).mean(axis=(0, 2, 3), keepdims=True)
            return ((z - m) / pt.sqrt(v + BN_EPS) * P[f"bn{k}.gamma"].dimshuffle("x", 0, "x", "x")
                    + P[f"bn{k}.beta"].dimshuffle("x", 0, "x", "x"))
        h = relu(bn(conv(x, P["conv1.W"], pad=0, wshape=shapes["conv1.W"]), 1), 0)
        h = relu(bn(conv(h, P["conv2.W"], wshape=shapes["conv2.W"]), 2), 0)
        h = relu(bn(conv(h, P["conv3.W"], pad=0, wshape=shapes["conv3.W"]), 3) + x, 0)
        return pt.mean(h * h)
    if wl == "W5":
        def c3(h, n):
            return relu(conv(h, P[n + ".W"], P[n + ".b"], wshape=shapes[n + ".W"]), 0)
        e1 = c3(x, "enc1")
        e2 = c3(pool(e1), "enc2")
        e3 = c3(pool(e2), "enc3")
        d2 = c3(pt.concatenate([e2, up(e3, P["up2.W"], P["up2.b"])], axis=1), "dec2")
        d1 = c3(pt.concatenate([e1, up(d2, P["up1.W"], P["up1.b"])], axis=1), "dec1")
        z = conv(d1, P["out.W"], P["out.b"], pad=0, wshape=shapes["out.W"])
        return pt.mean(pt.maximum(z, 0) - z * y + pt.log1p(pt.exp(-abs(z))))
    raise KeyError(wl)


class PyTensorPeer:
    """``pytensor.function`` computing the loss with SGD updates on shared
    variables, compiled with the numba backend when numba is installed."""

    def __init__(self, wl, params, data):
        import pytensor
        import pytensor.tensor as pt
        self.S = {k: pytensor.shared(np.array(v), name=k) for k, v in params.items()}
        shapes = {k: v.shape for k, v in params.items()}
        xv = np.asarray(data["x"])
        x = pt.tensor("x", dtype=str(xv.dtype), shape=xv.shape)
        ins, vals = [x], [xv]
        y = None
        if "y" in data:
            yv = np.asarray(data["y"])
            y = pt.tensor("y", dtype=str(yv.dtype), shape=yv.shape)
            ins.append(y)
            vals.append(yv)
        loss = _pt_graph(wl, self.S, x, y, shapes)
        params_ = list(self.S.values())
        grads = pytensor.grad(loss, params_)
        updates = [(p, p - np.asarray(LR, p.dtype) * g) for p, g in zip(params_, grads)]
        # the numba backend: the C backend of a pip install links no BLAS
        # here (W1 ~30x slower); numba kernels are cached on disk, so only
        # the first process on a machine pays their compile (minutes for W5)
        mode = "NUMBA" if _have("numba") else None
        self._step = pytensor.function(ins, loss, updates=updates, mode=mode)
        self._loss = pytensor.function(ins, loss, mode=mode)
        self.vals = vals

    def step(self):
        return float(self._step(*self.vals))

    def loss(self):
        return float(self._loss(*self.vals))


# --------------------------------------------------------------------------
# registry of the peers
# --------------------------------------------------------------------------

ALL = ("W1", "W2", "W3", "W4", "W5")


def torch_factory(params, data):
    return TorchPeer(data["workload"], params, data)


def torch_cell_factory(params, data):
    return TorchPeer(data["workload"], params, data, cell=True)


def jax_factory(params, data):
    return JaxPeer(data["workload"], params, data)


def pytensor_factory(params, data):
    return PyTensorPeer(data["workload"], params, data)


torch_factory.warm_imports = ("torch", "torch.nn.functional")
torch_cell_factory.warm_imports = ("torch", "torch.nn.functional")
jax_factory.warm_imports = ("jax", "jax.numpy")
pytensor_factory.warm_imports = ("pytensor", "pytensor.tensor", "numba")


def available():
    """{system name: (factory, workloads)} for the peers importable here."""
    out = {}
    if _have("torch"):
        out["torch"] = (torch_factory, ALL)
        out["torch_cell"] = (torch_cell_factory, ("W3",))
    if _have("jax"):
        out["jax"] = (jax_factory, ALL)
    if _have("pytensor"):
        out["pytensor"] = (pytensor_factory, ALL)
    return out
