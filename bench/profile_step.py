"""Where the time of one batch-size-1 training step goes, and what prototypes save.

Not library code: the prototypes below are measurements for the people who own
``torchrnn/layers.py`` and ``torchrnn/train.py``, checked against the current code for the
same weights after an epoch.

    python bench/profile_step.py phases       # per-step time of each phase of fit's loop
    python bench/profile_step.py ops          # torch.profiler: ATen ops and autograd nodes per step
    python bench/profile_step.py prototypes   # current step vs cheaper steps, interleaved, same process
    python bench/profile_step.py inference    # predict variants on the two inference shapes
    python bench/profile_step.py all --threads 1 --out bench/results/profile.json

For a Python-level view: ``py-spy record -r 2000 -f raw -o fit.txt -- python -c "..."`` on a
20-epoch ``torchrnn.train.fit`` (see bench/README.md).

Phases of one step (fit's loop): index (``Xe[s:s+1]``), zero_grad, forward (``model(xb)``), loss
(``F.mse_loss``), backward, optimizer (``KerasAdam.step``), record (``losses.append``).

Prototypes (each also checked: weights after one epoch in a fixed order vs the current code):
    A   current             torchrnn's model + F.mse_loss + KerasAdam, called as fit calls them
    A1  +mse direct         ``torch._C._nn.mse_loss`` instead of ``F.mse_loss`` (its Python checks)
    A2  KerasAdam.step      through torch.optim's profiler/hook wrapper (what fit did before c37883f;
                            an unhooked step is what fit does now, so A2 > A shows that change's gain)
    A3  +flat adam          parameters and grads as views of one flat buffer: no cat/split/foreach per step
    B   fused kernel        ``use_fused_kernel(True)``: ``torch.rnn_tanh`` recorded op by op by autograd
                            (what training ran before the layer got its own node)
    C   tanh node           one autograd node for the whole SimpleRNN (input projection, in-place
                            time-major loop, tanh' = 1 - h^2, last state only), + flat adam
    C2  tanh node, unbind   C with the per-step views taken by one ``unbind`` instead of a
                            ``select`` per ``states[t]`` (~70 fewer ATen calls per step)
    D   model+loss node     SimpleRNN + Dense + MSE as one autograd node, + flat adam
    E   numpy step          floor reference, not a proposal: the whole step in NumPy float32
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import _common as C


def _setup(threads):
    import torch
    info = C.setup_torch(threads)
    from bench_fit import tutorial_data
    X, y = tutorial_data()
    Xt = torch.as_tensor(X, dtype=torch.float32).contiguous()
    yt = torch.as_tensor(y, dtype=torch.float32).contiguous()
    return info, Xt, yt


def _model():
    from torchrnn import create_rnn
    return create_rnn(3, 1, (12, 1), ("tanh", "tanh"), seed=0)


def _fit_update(opt):
    """The optimizer call fit makes: since c37883f, KerasAdam's ``_step`` (no torch.optim wrapper)
    when no step hook is registered; ``step`` before that."""
    return getattr(opt, "_step", opt.step)


# --------------------------------------------------------------------------- phases

def phases(Xt, yt, reps=7, epochs_per_rep=2) -> dict:
    import torch
    from torchrnn.train import KerasAdam
    mse = torch.nn.functional.mse_loss
    pc = time.perf_counter
    model = _model()
    opt = KerasAdam(model.parameters())
    update = _fit_update(opt)
    n = Xt.shape[0]
    names = ("index", "zero_grad", "forward", "loss", "backward", "optimizer", "record")

    def run(steps):
        acc = [0.0] * 7
        perm = torch.randperm(n)
        Xe, ye = Xt[perm], yt[perm]
        pending = []
        t_start = pc()
        for s in range(steps):
            b = s % n
            t0 = pc()
            xb, yb = Xe[b:b + 1], ye[b:b + 1]
            t1 = pc()
            opt.zero_grad(set_to_none=True)
            t2 = pc()
            pred = model(xb)
            t3 = pc()
            loss = mse(pred, yb)
            t4 = pc()
            loss.backward()
            t5 = pc()
            update()
            t6 = pc()
            pending.append(loss.detach())
            t7 = pc()
            for i, (a, c) in enumerate(((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6), (t6, t7))):
                acc[i] += c - a
        wall = pc() - t_start
        return [a / steps * 1e6 for a in acc], wall / steps * 1e6

    run(300)
    runs = []
    for _ in range(reps):
        C.gate()
        runs.append(run(n * epochs_per_rep))
    med = {k: statistics.median(r[0][i] for r in runs) for i, k in enumerate(names)}
    wall = statistics.median(r[1] for r in runs)
    return {"us_per_step": med, "wall_us_per_step": wall,
            "timer_overhead_us": wall - sum(med.values()),
            "share": {k: v / wall for k, v in med.items()}}


# --------------------------------------------------------------------------- ops

def ops(Xt, yt, steps=187) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    from torchrnn.train import KerasAdam
    mse = torch.nn.functional.mse_loss
    model = _model()
    opt = KerasAdam(model.parameters())
    update = _fit_update(opt)

    def step(b):
        xb, yb = Xt[b:b + 1], yt[b:b + 1]
        opt.zero_grad(set_to_none=True)
        with record_function("phase::forward"):
            pred = model(xb)
        with record_function("phase::loss"):
            loss = mse(pred, yb)
        with record_function("phase::backward"):
            loss.backward()
        with record_function("phase::optimizer"):
            update()

    for b in range(300):
        step(b % Xt.shape[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in range(steps):
            step(b % Xt.shape[0])
    ka = prof.key_averages()
    aten = [e for e in ka if e.key.startswith("aten::")]
    nodes = [e for e in ka if e.key.startswith("autograd::engine::evaluate_function")]
    top = sorted((e for e in ka if not e.key.startswith("phase::")), key=lambda e: -e.self_cpu_time_total)[:15]
    return {
        "aten_ops_per_step": sum(e.count for e in aten) / steps,
        "autograd_nodes_per_step": sum(e.count for e in nodes) / steps,
        "phase_cpu_us_per_step": {e.key: e.cpu_time_total / e.count for e in ka if e.key.startswith("phase::")},
        "top_self_cpu": [{"op": e.key, "calls_per_step": e.count / steps, "self_us_per_step": e.self_cpu_time_total / steps}
                         for e in top],
        "note": "profiler overhead inflates every op; use the shares and counts, not the absolute times",
    }


# --------------------------------------------------------------------------- prototypes

def _prototypes():
    """Build the prototype classes lazily (torch imported by then)."""
    import torch

    class TanhRNN(torch.autograd.Function):
        """Last state of h_t = tanh(x_t W_ih^T + b + h_{t-1} W_hh^T) as one node; manual backward."""

        @staticmethod
        def forward(ctx, x, w_ih, b, w_hh):
            n, L, f = x.shape
            xs = x.transpose(0, 1).reshape(L * n, f)               # time-major
            states = torch.addmm(b, xs, w_ih.t()).view(L, n, -1)   # input projection, then states in place
            wt = w_hh.t()
            states[0].tanh_()
            for t in range(1, L):
                states[t].addmm_(states[t - 1], wt).tanh_()
            ctx.save_for_backward(xs, w_ih, w_hh, states)
            return states[-1].clone()

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, g_last):
            xs, w_ih, w_hh, states = ctx.saved_tensors
            L, n, H = states.shape
            dact = 1 - states * states                 # tanh'(z) = 1 - h^2, whole sequence at once
            gp = torch.empty_like(states)
            torch.mul(g_last, dact[-1], out=gp[-1])
            for t in range(L - 1, 0, -1):
                torch.mm(gp[t], w_hh, out=gp[t - 1])
                gp[t - 1].mul_(dact[t - 1])
            g2 = gp.view(L * n, H)
            grad_w_hh = g2[n:].t() @ states[:-1].reshape((L - 1) * n, H)
            grad_x = (g2 @ w_ih).view(L, n, -1).transpose(0, 1) if ctx.needs_input_grad[0] else None
            return grad_x, g2.t() @ xs, g2.sum(0), grad_w_hh

    class TanhRNNUnbind(torch.autograd.Function):
        """TanhRNN with the per-step views taken once (``unbind``) instead of one ``select`` per
        use: the same arithmetic, ~70 fewer ATen calls per step at L=12."""

        @staticmethod
        def forward(ctx, x, w_ih, b, w_hh):
            n, L, f = x.shape
            xs = x.transpose(0, 1).reshape(L * n, f)
            states = torch.addmm(b, xs, w_ih.t()).view(L, n, -1)
            hs = states.unbind(0)
            wt = w_hh.t()
            prev = hs[0].tanh_()
            for h in hs[1:]:
                prev = h.addmm_(prev, wt).tanh_()
            ctx.save_for_backward(xs, w_ih, w_hh, states)
            return prev.clone()

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, g_last):
            xs, w_ih, w_hh, states = ctx.saved_tensors
            L, n, H = states.shape
            dact = (1 - states * states).unbind(0)
            gp = torch.empty_like(states)
            gps = gp.unbind(0)
            g = torch.mul(g_last, dact[-1], out=gps[-1])
            for t in range(L - 2, -1, -1):
                g = torch.mm(g, w_hh, out=gps[t]).mul_(dact[t])
            g2 = gp.view(L * n, H)
            grad_w_hh = g2[n:].t() @ states[:-1].reshape((L - 1) * n, H)
            grad_x = (g2 @ w_ih).view(L, n, -1).transpose(0, 1) if ctx.needs_input_grad[0] else None
            return grad_x, g2.t() @ xs, g2.sum(0), grad_w_hh

    class TutorialLoss(torch.autograd.Function):
        """MSE of tanh(Dense(SimpleRNN_tanh(x))) against y as one node; manual backward."""

        @staticmethod
        def forward(ctx, x, y, w_ih, b, w_hh, w_d, b_d):
            n, L, f = x.shape
            xs = x.transpose(0, 1).reshape(L * n, f)
            states = torch.addmm(b, xs, w_ih.t()).view(L, n, -1)
            wt = w_hh.t()
            states[0].tanh_()
            for t in range(1, L):
                states[t].addmm_(states[t - 1], wt).tanh_()
            o = torch.addmm(b_d, states[-1], w_d.t()).tanh_()
            diff = o - y
            ctx.save_for_backward(xs, w_hh, w_d, states, o, diff)
            return diff.square().mean()

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, gl):
            xs, w_hh, w_d, states, o, diff = ctx.saved_tensors
            L, n, H = states.shape
            dpre = diff * (gl * (2.0 / diff.numel()))
            dpre.mul_(1 - o * o)
            dact = 1 - states * states
            gp = torch.empty_like(states)
            torch.mm(dpre, w_d, out=gp[-1])
            gp[-1].mul_(dact[-1])
            for t in range(L - 1, 0, -1):
                torch.mm(gp[t], w_hh, out=gp[t - 1])
                gp[t - 1].mul_(dact[t - 1])
            g2 = gp.view(L * n, H)
            grad_w_hh = g2[n:].t() @ states[:-1].reshape((L - 1) * n, H)
            return None, None, g2.t() @ xs, g2.sum(0), grad_w_hh, dpre.t() @ states[-1], dpre.sum(0)

    class FlatKerasAdam:
        """Keras's Adam update (as torchrnn.train.KerasAdam computes it) on flat buffers.

        The parameters' ``.data`` and ``.grad`` become views of two flat tensors, so autograd
        accumulates every gradient straight into one buffer and the update is ten in-place
        operations on it: no torch.cat of the gradients, no split, no _foreach_sub_, no
        torch.optim wrapper around step().
        """

        def __init__(self, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
            self.params = list(params)
            numels = [p.numel() for p in self.params]
            with torch.no_grad():
                self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
                self.gflat = torch.zeros_like(self.flat)
                for p, v, g in zip(self.params, self.flat.split(numels), self.gflat.split(numels)):
                    p.data = v.view_as(p)
                    p.grad = g.view_as(p)
            self.m, self.v, self.tmp = (torch.zeros_like(self.flat) for _ in range(3))
            self.t = 0
            f = np.float32
            self.lr, self.b1, self.b2, self.one = f(lr), f(b1), f(b2), f(1)
            self.c1, self.c2, self.eps = 1.0 - b1, 1.0 - b2, eps

        def zero_grad(self, set_to_none=True):
            self.gflat.zero_()

        @torch.no_grad()
        def step(self):
            self.t += 1
            t = np.float32(self.t)
            alpha = float(self.lr * np.sqrt(self.one - self.b2 ** t) / (self.one - self.b1 ** t))
            g, m, v, tmp = self.gflat, self.m, self.v, self.tmp
            torch.sub(g, m, out=tmp).mul_(self.c1)
            m.add_(tmp)
            torch.mul(g, g, out=tmp).sub_(v).mul_(self.c2)
            v.add_(tmp)
            den = v.sqrt().add_(self.eps)
            torch.mul(m, alpha, out=tmp).div_(den)
            self.flat.sub_(tmp)

    return TanhRNN, TutorialLoss, FlatKerasAdam, TanhRNNUnbind


class NumpyTutorialStep:
    """Floor reference, not a proposal: the tutorial's whole step (forward, manual backward,
    Keras Adam) in NumPy float32, whose per-call overhead is ~0.5-1 us against torch's ~2-3 us.
    ``parameters()`` returns the flat float32 weights for the epoch check."""

    def __init__(self, model, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
        import torch
        rnn, dense = model.rnn[0], model.dense
        ps = [rnn.weight_ih, rnn.bias, rnn.weight_hh, dense.weight, dense.bias]
        self.flat = np.concatenate([p.detach().numpy().reshape(-1) for p in ps]).astype(np.float32)
        self.gflat = np.zeros_like(self.flat)
        views, gviews, o = [], [], 0
        for p in ps:
            k = p.numel()
            views.append(self.flat[o:o + k].reshape(tuple(p.shape)))
            gviews.append(self.gflat[o:o + k].reshape(tuple(p.shape)))
            o += k
        self.w_ih, self.b, self.w_hh, self.w_d, self.b_d = views
        self.g_w_ih, self.g_b, self.g_w_hh, self.g_w_d, self.g_b_d = gviews
        self.m, self.v, self.tmp = (np.zeros_like(self.flat) for _ in range(3))
        f = np.float32
        self.lr, self.b1, self.b2, self.one = f(lr), f(b1), f(b2), f(1)
        self.c1, self.c2, self.eps = f(1.0 - b1), f(1.0 - b2), f(eps)
        self.t = 0
        self._torch = torch

    def parameters(self):
        return [self._torch.from_numpy(self.flat)]

    def __call__(self, x, y):
        n, L, F = x.shape
        xs = x.transpose(1, 0, 2).reshape(L * n, F)
        st = (xs @ self.w_ih.T + self.b).reshape(L, n, -1)
        wt = self.w_hh.T
        np.tanh(st[0], out=st[0])
        for t in range(1, L):
            s = st[t]
            s += st[t - 1] @ wt
            np.tanh(s, out=s)
        o = np.tanh(st[-1] @ self.w_d.T + self.b_d)
        diff = o - y
        loss = np.mean(diff * diff)
        dpre = diff * np.float32(2.0 / diff.size)
        dpre *= 1 - o * o
        dact = 1 - st * st
        gp = np.empty_like(st)
        np.matmul(dpre, self.w_d, out=gp[-1])
        gp[-1] *= dact[-1]
        for t in range(L - 1, 0, -1):
            np.matmul(gp[t], self.w_hh, out=gp[t - 1])
            gp[t - 1] *= dact[t - 1]
        g2 = gp.reshape(L * n, -1)
        np.matmul(g2[n:].T, st[:-1].reshape((L - 1) * n, -1), out=self.g_w_hh)
        np.matmul(g2.T, xs, out=self.g_w_ih)
        np.sum(g2, axis=0, out=self.g_b)
        np.matmul(dpre.T, st[-1], out=self.g_w_d)
        np.sum(dpre, axis=0, out=self.g_b_d)
        self.t += 1
        t = np.float32(self.t)
        alpha = self.lr * np.sqrt(self.one - self.b2 ** t) / (self.one - self.b1 ** t)
        g, m, v, tmp = self.gflat, self.m, self.v, self.tmp
        np.subtract(g, m, out=tmp)
        tmp *= self.c1
        m += tmp
        np.multiply(g, g, out=tmp)
        tmp -= v
        tmp *= self.c2
        v += tmp
        den = np.sqrt(v)
        den += self.eps
        np.multiply(m, alpha, out=tmp)
        tmp /= den
        self.flat -= tmp
        return loss


PROTOTYPES = ["A current", "A1 +mse direct", "A2 wrapped KerasAdam.step", "A3 +flat adam", "B fused kernel under autograd",
              "C tanh node + flat adam", "C2 tanh node (unbind) + flat adam", "D model+loss node + flat adam",
              "E numpy step (floor reference)"]


def make_step(kind: str):
    import torch
    from torchrnn.train import KerasAdam
    TanhRNN, TutorialLoss, FlatKerasAdam, TanhRNNUnbind = _prototypes()
    model = _model()
    mse = torch.nn.functional.mse_loss
    if kind.startswith("A1"):
        mse = torch._C._nn.mse_loss
    if "flat adam" in kind:
        opt = FlatKerasAdam(model.parameters())
    else:
        opt = KerasAdam(model.parameters())
    update = opt.step if kind.startswith("A2") or "flat adam" in kind else _fit_update(opt)
    if kind.startswith("B"):
        model.use_fused_kernel(True)     # torch.rnn_tanh recorded op by op by autograd
    if kind.startswith("E"):
        np_step = NumpyTutorialStep(model)

        def step(xb, yb):
            return np_step(xb.numpy(), yb.numpy())
        return np_step, step
    rnn, dense = model.rnn[0], model.dense

    if kind.startswith("C"):
        node = TanhRNNUnbind if kind.startswith("C2") else TanhRNN

        def forward(xb):
            return torch.tanh(dense(node.apply(xb, rnn.weight_ih, rnn.bias, rnn.weight_hh)))
    else:
        forward = model

    if kind.startswith("D"):
        def step(xb, yb):
            opt.zero_grad(set_to_none=True)
            loss = TutorialLoss.apply(xb, yb, rnn.weight_ih, rnn.bias, rnn.weight_hh, dense.weight, dense.bias)
            loss.backward()
            update()
            return loss
    else:
        def step(xb, yb):
            opt.zero_grad(set_to_none=True)
            loss = mse(forward(xb), yb)
            loss.backward()
            update()
            return loss
    return model, step


def prototypes(Xt, yt, reps=9) -> dict:
    import torch
    n = Xt.shape[0]
    check = {}
    ref = None
    for kind in PROTOTYPES:  # same weights after one epoch in a fixed order
        model, step = make_step(kind)
        for b in range(n):
            step(Xt[b:b + 1], yt[b:b + 1])
        if isinstance(model, NumpyTutorialStep):  # flat order: w_ih, b, w_hh, w_d, b_d
            w = torch.from_numpy(np.concatenate([model.w_ih.ravel(), model.w_hh.ravel(), model.b, model.w_d.ravel(),
                                                 model.b_d]))
        else:
            w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        ref = w if ref is None else ref
        check[kind] = float((w - ref).abs().max())
    steps = {k: make_step(k)[1] for k in PROTOTYPES}
    for k in PROTOTYPES:
        for b in range(300):
            steps[k](Xt[b % n:b % n + 1], yt[b % n:b % n + 1])
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    Xe, ye = Xt[idx], yt[idx]
    times = {k: [] for k in PROTOTYPES}
    for _, order in C.rotations(PROTOTYPES, reps):
        C.gate()
        for k in order:
            st = steps[k]
            t0 = time.perf_counter()
            for b in range(n):
                st(Xe[b:b + 1], ye[b:b + 1])
            times[k].append((time.perf_counter() - t0) / n * 1e6)
    base = statistics.median(times[PROTOTYPES[0]])
    return {k: {"us_per_step": statistics.median(ts), "vs_current": statistics.median(ts) / base,
                "max_abs_weight_diff_after_epoch": check[k], "times_us": ts} for k, ts in times.items()}


# --------------------------------------------------------------------------- inference prototypes

def inference(reps=5) -> dict:
    import torch
    from bench_inference import CASES, case_input, torch_model

    @torch.no_grad()
    def lean_predict(model, x_np, chunk):
        """One tanh SimpleRNN + Dense, no grad: float32 straight in, time-major, in place, last state only."""
        layer = model.rnn[0]
        w_ih_t, w_hh_t, b = layer.weight_ih.t(), layer.weight_hh.t(), layer.bias
        x = torch.from_numpy(x_np)
        n, L, f = x.shape
        out = torch.empty(n, model.dense.out_features)
        for s in range(0, n, chunk):
            xc = x[s:s + chunk].transpose(0, 1).contiguous()
            c = xc.shape[1]
            st = torch.addmm(b, xc.view(L * c, f), w_ih_t).view(L, c, -1)
            st[0].tanh_()
            for t in range(1, L):
                st[t].addmm_(st[t - 1], w_hh_t).tanh_()
            torch.addmm(model.dense.bias, st[-1], model.dense.weight.t(), out=out[s:s + c]).tanh_()
        return out.numpy()

    result = {}
    for case in CASES:
        model, x = torch_model(case), case_input(case)
        ref = model.predict(x, batch_size=1024)
        variants = {"predict default chunks": lambda: model.predict(x),
                    "predict whole array": lambda: model.predict(x, batch_size=len(x))}
        for bs in (256, 1024, 4096):
            variants[f"predict bs={bs}"] = (lambda bs=bs: model.predict(x, batch_size=bs))
        for bs in (256, 1024, 4096):
            variants[f"lean no-grad loop bs={bs}"] = (lambda bs=bs: lean_predict(model, x, bs))
        variants["model.as_input alone"] = lambda: model.as_input(x)
        diffs = {k: float(np.abs(f() - ref).max()) for k, f in variants.items() if "as_input" not in k}
        times = {k: [] for k in variants}
        for _, order in C.rotations(list(variants), reps):
            C.gate()
            for k in order:
                t0 = time.perf_counter()
                variants[k]()
                times[k].append(time.perf_counter() - t0)
        result[case] = {k: {"median_s": statistics.median(ts), "times_s": ts, "max_abs_diff": diffs.get(k)}
                        for k, ts in times.items()}
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["phases", "ops", "prototypes", "inference", "all"])
    p.add_argument("--threads", default="1", help="torch intra-op threads ('default' = torch's choice); default 1")
    p.add_argument("--out", default=None, help="write the results JSON here")
    args = p.parse_args(argv)
    threads = None if args.threads == "default" else int(args.threads)
    info, Xt, yt = _setup(threads)
    out = {"machine": C.machine_info(), "torch": info}
    todo = ["phases", "ops", "prototypes", "inference"] if args.what == "all" else [args.what]
    for what in todo:
        if what == "phases":
            r = out["phases"] = phases(Xt, yt)
            print(f"phases (us per step, threads {info['intra_op_threads']}, load {C.loadavg()}):")
            for k, v in r["us_per_step"].items():
                print(f"  {k:10s} {v:7.1f}  {r['share'][k] * 100:5.1f}%")
            print(f"  wall       {r['wall_us_per_step']:7.1f}")
        elif what == "ops":
            r = out["ops"] = ops(Xt, yt)
            print(f"ATen ops per step {r['aten_ops_per_step']:.0f}, autograd nodes per step {r['autograd_nodes_per_step']:.0f}")
            for e in r["top_self_cpu"]:
                print(f"  {e['op']:60s} {e['calls_per_step']:6.1f} calls  {e['self_us_per_step']:7.1f} us self")
        elif what == "prototypes":
            r = out["prototypes"] = prototypes(Xt, yt)
            print(f"prototypes (threads {info['intra_op_threads']}, load {C.loadavg()}):")
            for k, v in r.items():
                print(f"  {k:32s} {v['us_per_step']:7.1f} us/step  x{v['vs_current']:.2f}  "
                      f"weights vs current after an epoch: {v['max_abs_weight_diff_after_epoch']:.1e}")
        elif what == "inference":
            r = out["inference"] = inference()
            print(f"inference prototypes (threads {info['intra_op_threads']}, load {C.loadavg()}):")
            for case, vs in r.items():
                for k, v in vs.items():
                    print(f"  {case:5s} {k:44s} {C.fmt_s(v['median_s']):>9s}")
    out["loadavg_at_end"] = C.loadavg()
    if args.out:
        C.write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
