"""torchrnn.train and torchrnn.metrics: Keras's Adam (K9), Keras-like fit, RMSE without broadcasting (K5).

The live-Keras tests drive keras.optimizers.Adam and keras Model.fit beside torchrnn on the
same numbers; they are skipped when Keras is not installed.
"""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from parity.compare import FLOAT32_ATOL, FLOAT64_ATOL, GOLDEN_ATOL, assert_close
from torchrnn import create_rnn
from torchrnn import data as D
from torchrnn.metrics import mse, rmse, rmse_table
from torchrnn.train import History, KerasAdam, evaluate, fit, predict

# KerasAdam repeats Keras's float32 operations in Keras's order, each one IEEE-rounded (+, -, *,
# /, sqrt: on the CPU through NumPy, whose sqrt is correctly rounded like TensorFlow's; torch
# 2.13's CPU sqrt is one ulp off for one float32 in seven on an AMD EPYC). So the weights agree
# to the last bit after tens of steps, on any CPU: no tolerance.
ADAM_F32_ATOL = 0.0
# Training through model.fit: forward and backward are summed in a different order by TF and
# torch, a few ulps per step; after ~400 steps the weights differ by ~2e-7 (observed).
FIT_F32_ATOL = 2e-6


@pytest.fixture(scope="module")
def sunspots():
    """The tutorial's windows (embedded data, 80/20, 12 steps, scaler on the training part)."""
    v = D.load_series()
    train, test = D.train_test_split(v, 0.8)
    sc = D.fit_scaler(train, v, "train")
    Xtr, ytr = D.make_windows(D.scale(sc, train), 12)
    Xte, yte = D.make_windows(D.scale(sc, test), 12)
    return Xtr, ytr, Xte, yte


def _keras():
    return pytest.importorskip("keras")


# --------------------------------------------------------------------------- K5 metrics

def test_k5_rmse_reshapes_only_the_n_vs_n1_pair():
    assert rmse([1, 2, 3], [[1], [2], [3]]) == 0.0  # broadcast bug: 1.1547005
    assert_close(rmse([0.2, 0.4, 0.6, 0.8], [[0.25], [0.35], [0.65], [0.7]]), 0.0661438,
                 atol=GOLDEN_ATOL, name="K5 rmse")  # broadcast bug: 0.2947457
    # The same pair in the other order, and as torch tensors.
    assert_close(rmse(torch.tensor([[0.2], [0.4], [0.6], [0.8]]), torch.tensor([0.25, 0.35, 0.65, 0.7])),
                 0.0661438, atol=GOLDEN_ATOL, name="K5 rmse, swapped, tensors")
    # What the broadcast would have given, so the test shows the class of bug it guards against.
    t, p = np.array([0.2, 0.4, 0.6, 0.8]), np.array([[0.25], [0.35], [0.65], [0.7]])
    assert_close(np.sqrt(np.mean((t - p) ** 2)), 0.2947457, atol=GOLDEN_ATOL, name="the broadcast bug")


@pytest.mark.parametrize("shapes", [((3,), (1, 3)), ((3, 1), (1, 3)), ((4,), (3, 1)), ((3, 2), (3,)),
                                    ((2, 3, 1), (2, 3)), ((3,), (3, 1, 1))])
def test_rmse_refuses_other_shape_mismatches(shapes):
    a, b = np.zeros(shapes[0]), np.zeros(shapes[1])
    with pytest.raises(ValueError, match=r"shape .* never broadcast"):
        rmse(a, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rmse_refuses_non_finite_values(bad):
    with pytest.raises(ValueError, match=rf"^y_true holds 1 non-finite value \(first {bad!r} at index \(1,\)\)$"):
        rmse([1.0, bad], [1.0, 2.0])
    with pytest.raises(ValueError, match="y_pred holds 1 non-finite"):
        rmse([[1.0], [2.0]], [1.0, bad])


def test_rmse_refuses_empty_and_non_numeric():
    with pytest.raises(ValueError, match="empty"):
        rmse([], [])
    with pytest.raises(ValueError, match="not a numeric array"):
        rmse(["a", "b"], [1, 2])


def test_mse_rmse_and_table_values():
    y = np.array([[1.0], [2.0], [4.0]])
    f = np.array([[1.5], [2.0], [3.0]])
    assert_close(mse(y, f), (0.25 + 0 + 1) / 3, atol=FLOAT64_ATOL, name="mse")
    assert_close(rmse(y, f), np.sqrt(1.25 / 3), atol=FLOAT64_ATOL, name="rmse")
    table = rmse_table(y, {"model": f, "zero": np.zeros(3)}, to_original=lambda a: 10 * a + 5)
    assert set(table) == {"model", "zero"}
    assert_close(table["model"]["original"], 10 * np.sqrt(1.25 / 3), atol=FLOAT64_ATOL, name="original units")
    assert_close(table["zero"]["scaled"], np.sqrt(21 / 3), atol=FLOAT64_ATOL, name="zero forecast")
    assert "original" not in rmse_table(y, {"m": f})["m"]


def test_huge_errors_give_a_finite_rmse_or_an_error_never_inf():
    # 1e300 in a CSV once gave RMSE inf in the table and "Infinity" in metrics.json.
    y, f = np.array([[1e300], [0.0]]), np.array([[0.0], [0.0]])
    with np.errstate(all="raise"):  # and no numpy overflow warning on the way
        assert_close(rmse(y, f), 1e300 / np.sqrt(2), atol=0.0, rtol=1e-15, name="rmse of huge errors")
    with pytest.raises(ValueError, match=r"mean squared error is beyond float64 \(largest \|error\| 1e\+300 at "
                                         r"index \(0, 0\)\)"):
        mse(y, f)
    with pytest.raises(ValueError, match=r"error itself is beyond float64 \(largest \|error\| inf at index \(1,\)\)"):
        rmse([0.0, 1e308], [0.0, -1e308])
    # below the overflow the result is the one computed directly, bit for bit
    y, f = np.array([3.0, 1e150]), np.array([1.0, 2.0])
    assert rmse(y, f) == float(np.sqrt(np.mean((y - f) ** 2)))


# --------------------------------------------------------------------------- K9 Keras Adam

K9 = [(1e-1, 9.99962e-4, 9.99999e-4), (1e-3, 9.96841e-4, 9.99900e-4), (1e-5, 7.59742e-4, 9.90099e-4)]


@pytest.mark.parametrize("grad,keras_move,torch_move", K9)
def test_k9_one_step_moves_like_keras_not_like_torch(grad, keras_move, torch_move):
    p = nn.Parameter(torch.zeros(()))
    opt = KerasAdam([p])  # Keras defaults: lr 1e-3, betas 0.9/0.999, eps 1e-7
    p.grad = torch.tensor(grad)
    opt.step()
    # The handed figures have 6 significant digits: +-5e-10 at 1e-3.
    assert_close(-p.detach(), keras_move, atol=1e-9, name=f"KerasAdam move, grad {grad:g}")
    # torch.optim.Adam puts epsilon on the bias-corrected root: a different number.
    q = nn.Parameter(torch.zeros(()))
    topt = torch.optim.Adam([q], lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    q.grad = torch.tensor(grad)
    topt.step()
    assert_close(-q.detach(), torch_move, atol=1e-9, name=f"torch.optim.Adam move, grad {grad:g}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lr", [1e-3, 0.05])
def test_keras_adam_matches_live_keras_over_many_steps(dtype, lr):
    keras = _keras()
    rng = np.random.default_rng(7)
    shapes = [(1, 3), (3, 3), (3,), (3, 1), (1,)]  # the tutorial model's weights
    init = [rng.normal(size=s).astype(dtype) for s in shapes]
    # Gradients over six orders of magnitude, so that the epsilon rule matters in some steps.
    steps = [[(rng.normal(size=s) * 10.0 ** rng.uniform(-6, 0)).astype(dtype) for s in shapes] for _ in range(40)]

    kvars = [keras.Variable(w, dtype=dtype) for w in init]
    kopt = keras.optimizers.Adam(learning_rate=lr)
    for gs in steps:
        kopt.apply_gradients([(keras.ops.convert_to_tensor(g), v) for g, v in zip(gs, kvars)])

    tparams = [nn.Parameter(torch.tensor(w)) for w in init]
    topt = KerasAdam(tparams, lr=lr)
    for gs in steps:
        for p, g in zip(tparams, gs):
            p.grad = torch.tensor(g)
        topt.step()
    atol = ADAM_F32_ATOL if dtype == "float32" else FLOAT64_ATOL
    for i, (kv, tp) in enumerate(zip(kvars, tparams)):
        assert_close(tp.detach(), np.asarray(kv.numpy()), atol=atol, check_dtype=True,
                     name=f"weight {i} {shapes[i]} after 40 steps, {dtype}, lr {lr}")
    assert topt.param_groups[0]["step"] == int(kopt.iterations.numpy()) == 40


def test_keras_adam_partial_gradients_match_flat_path():
    """A step where one parameter has no gradient leaves it (and its moments) alone and moves the
    others exactly as the flat path would."""
    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(4))]
    b = [nn.Parameter(t.detach().clone()) for t in a]
    oa, ob = KerasAdam(a), KerasAdam(b)
    grads = [torch.randn(3, 2), torch.randn(4)]
    for opt, ps in ((oa, a), (ob, b)):
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        opt.step()
    # Second step: b[1] has no gradient (per-parameter path), a[1] a zero one (flat path); the
    # update of the parameter that has the same gradient in both must be the same.
    g2 = torch.randn(3, 2)
    a[0].grad, a[1].grad = g2.clone(), torch.zeros(4)
    b[0].grad, b[1].grad = g2.clone(), None
    before = b[1].detach().clone()
    m_before = ob.state[b[1]]["m"].clone()
    oa.step()
    ob.step()
    assert_close(b[0].detach(), a[0].detach(), atol=0.0, name="parameter with a gradient")
    assert_close(b[1].detach(), before, atol=0.0, name="parameter without a gradient is unchanged")
    assert_close(ob.state[b[1]]["m"], m_before, atol=0.0, name="its first moment is unchanged")
    assert ob.param_groups[0]["step"] == 2  # Keras counts iterations for all variables


def test_keras_adam_state_dict_round_trip_continues_identically():
    torch.manual_seed(1)
    p = nn.Parameter(torch.randn(5))
    opt = KerasAdam([p], lr=0.01)
    gs = [torch.randn(5) for _ in range(6)]
    for g in gs[:3]:
        p.grad = g.clone()
        opt.step()
    # state_dict() holds the live tensors (as torch's optimizers do): copy before stepping on.
    saved_p, saved_state = p.detach().clone(), copy.deepcopy(opt.state_dict())
    for g in gs[3:]:
        p.grad = g.clone()
        opt.step()
    q = nn.Parameter(saved_p.clone())
    opt2 = KerasAdam([q], lr=0.01)
    opt2.load_state_dict(saved_state)
    for g in gs[3:]:
        q.grad = g.clone()
        opt2.step()
    assert_close(q.detach(), p.detach(), atol=0.0, name="resumed optimizer")


@pytest.mark.parametrize("kwargs,match", [({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"),
                                          ({"lr": 1e308}, r"lr must fit in float32 \(at most 3.403e\+38\), got 1e\+308"),
                                          ({"betas": (1.0, 0.999)}, "betas"), ({"eps": -1.0}, "eps")])
def test_keras_adam_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KerasAdam([nn.Parameter(torch.zeros(1))], **kwargs)


# --------------------------------------------------------------------------- fit like Keras

@pytest.mark.parametrize("batch_size", [1, 7])
def test_fit_trains_like_keras_model_fit(sunspots, batch_size):
    """Same initial weights, same sample order (shuffle=False): Keras's compile('adam', 'mse') + fit
    and torchrnn's fit end with the same weights and report the same epoch losses. 187 windows
    in batches of 7 leave a last batch of 5, which Keras weights by its size in the epoch loss."""
    keras = _keras()
    Xtr, ytr = sunspots[0][:120], sunspots[1][:120]
    if batch_size == 7:
        Xtr, ytr = sunspots[0], sunspots[1]
    keras.utils.set_random_seed(3)
    km = keras.Sequential([keras.Input((12, 1)), keras.layers.SimpleRNN(3, activation="tanh"),
                           keras.layers.Dense(1, activation="tanh")])
    km.compile(loss="mean_squared_error", optimizer="adam")
    tm = create_rnn(3, 1, (12, 1), ("tanh", "tanh"))
    tm.set_weights(km.get_weights())
    epochs = 2
    kh = km.fit(Xtr.astype(np.float32), ytr.astype(np.float32), epochs=epochs, batch_size=batch_size,
                shuffle=False, verbose=0)
    th = fit(tm, Xtr, ytr, epochs=epochs, batch_size=batch_size, shuffle=False)
    for i, (kw, tw, name) in enumerate(zip(km.get_weights(), tm.get_weights(), tm.weight_names())):
        assert_close(tw, kw, atol=FIT_F32_ATOL, name=f"{name} after {epochs} epochs, batch {batch_size}")
    assert_close(np.array(th.loss), np.array(kh.history["loss"]), atol=0.0, rtol=1e-5,
                 name="epoch losses as Keras reports them")


def test_epoch_loss_is_batch_size_weighted_mean(sunspots):
    Xtr, ytr = sunspots[0][:23], sunspots[1][:23]
    h = fit(create_rnn(3, 1, (12, 1), seed=0), Xtr, ytr, epochs=2, batch_size=5, seed=0)
    sizes = np.array([5, 5, 5, 5, 3])
    for e in range(2):
        assert len(h.batch_loss[e]) == 5
        assert_close(h.loss[e], float(np.dot(h.batch_loss[e], sizes) / 23), atol=FLOAT64_ATOL,
                     name=f"epoch {e + 1} loss")
    assert isinstance(h, History) and h.history == {"loss": h.loss} and h.epochs == 2 and h.batch_size == 5


def test_fit_is_repeatable_with_a_seed_and_leaves_the_global_rng_alone(sunspots):
    Xtr, ytr = sunspots[0][:60], sunspots[1][:60]
    models = [create_rnn(3, 1, (12, 1), seed=11) for _ in range(4)]  # same initial weights
    state = torch.get_rng_state()
    runs = []
    for m, seed in zip(models, (5, 5, 6)):
        h = fit(m, Xtr, ytr, epochs=3, seed=seed)
        runs.append((h, m.get_weights()))
    assert torch.equal(torch.get_rng_state(), state), "fit must not draw from torch's global RNG"
    (h1, w1), (h2, w2), (h3, w3) = runs
    assert h1.loss == h2.loss and h1.batch_loss == h2.batch_loss
    for a, b in zip(w1, w2):
        assert_close(a, b, atol=0.0, name="same seed, same weights")
    assert h1.loss != h3.loss
    assert any(not np.array_equal(a, b) for a, b in zip(w1, w3))
    # seed=None: a fresh order each time, still without touching the global RNG.
    fit(models[3], Xtr, ytr, epochs=1, seed=None)
    assert torch.equal(torch.get_rng_state(), state)


def test_shuffle_visits_every_window_once_per_epoch():
    """A model that records what it sees: each epoch is a permutation, and epochs differ."""
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            if self.training:
                seen.append(int(x[0, 0]))
            return x * self.w

    X = np.arange(10, dtype=np.float64).reshape(10, 1)
    fit(Recorder(), X, X, epochs=3, batch_size=1, seed=0)
    epochs = [seen[i * 10:(i + 1) * 10] for i in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(10))
    assert epochs[0] != epochs[1] != epochs[2]
    seen.clear()
    fit(Recorder(), X, X, epochs=1, batch_size=1, shuffle=False)
    assert seen == list(range(10))


def test_a_broadcasting_loss_in_fit_fails_the_suite(sunspots, monkeypatch):
    """With fit's own shape check switched off, torch's broadcast warning from the loss inside
    fit surfaces as an error: pyproject's filterwarnings turns torch UserWarnings into errors
    (its module pattern 'torch.*' matches where torch attributes the warning: torchrnn.train)."""
    import torchrnn.train as T

    monkeypatch.setattr(T, "_check_pair", lambda *args: None)
    Xtr, ytr = sunspots[0][:10], sunspots[1][:10]
    monkeypatch.setattr(T, "_NUMPY_FIT", False)  # torch's loss, and its warning
    with pytest.raises(UserWarning, match="broadcast"):
        fit(create_rnn(3, 1, (12, 1), seed=0), Xtr, ytr[:, :, None], epochs=1)  # (N, 1, 1) against (N, 1)
    monkeypatch.setattr(T, "_NUMPY_FIT", True)  # the NumPy step has a guard of its own
    with pytest.raises(ValueError, match=r"output has shape \(1, 1\) but the targets have shape \(1, 1, 1\)"):
        fit(create_rnn(3, 1, (12, 1), seed=0), Xtr, ytr[:, :, None], epochs=1)


def test_fit_refuses_a_target_shape_that_would_broadcast(sunspots):
    Xtr, ytr = sunspots[0][:10], sunspots[1][:10]
    m = create_rnn(3, 1, (12, 1), seed=0)
    before = m.get_weights()
    # the user's shapes (10 rows), not those of the one-sample look fit takes before training
    with pytest.raises(ValueError, match=r"output has shape \(10, 1\) but the targets have shape \(10, 2\)"):
        fit(m, Xtr, np.repeat(ytr, 2, axis=1), epochs=1)
    for a, b in zip(m.get_weights(), before):
        assert_close(a, b, atol=0.0, name="no step was taken")


def test_fit_reads_n_targets_as_n_by_1_as_keras_does(sunspots):
    """The tutorial's get_XY gives y of shape (N,) for a (N, 1) output: the same training as (N, 1),
    weight for weight (a broadcast would have trained on an (N, N) loss)."""
    Xtr, ytr = sunspots[0][:20], sunspots[1][:20]
    a, b = create_rnn(3, 1, (12, 1), seed=0), create_rnn(3, 1, (12, 1), seed=0)
    ha = fit(a, Xtr, ytr[:, 0], epochs=2, seed=1)
    hb = fit(b, Xtr, ytr, epochs=2, seed=1)
    assert ha.loss == hb.loss
    for (name, wa), wb in zip(a.named_parameters(), b.parameters()):
        assert_close(wa.detach(), wb.detach(), atol=0.0, name=name)


@pytest.mark.parametrize("case,match", [
    ("nan_x", "X holds 1 non-finite"), ("inf_y", "y holds 1 non-finite"), ("n_mismatch", "X has 10 samples but y has 9"),
    ("empty", "X is empty"), ("epochs", "epochs must be a positive integer"), ("batch", "batch_size must be"),
    ("seed", "seed must be an integer"), ("text", "not a numeric array"),
])
def test_fit_validates_its_inputs(sunspots, case, match):
    X, y = sunspots[0][:10].copy(), sunspots[1][:10].copy()
    kw = {}
    if case == "nan_x":
        X[3, 4, 0] = np.nan
    elif case == "inf_y":
        y[2, 0] = np.inf
    elif case == "n_mismatch":
        y = y[:9]
    elif case == "empty":
        X, y = X[:0], y[:0]
    elif case == "epochs":
        kw["epochs"] = 0
    elif case == "batch":
        kw["batch_size"] = 0
    elif case == "seed":
        kw["seed"] = 1.5
    elif case == "text":
        X = [["a"] * 12] * 10
    with pytest.raises(ValueError, match=match):
        fit(create_rnn(3, 1, (12, 1), seed=0), X, y, **kw)


def test_fit_reports_divergence_with_the_epoch():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    X = np.full((4, 1), 1e18)
    with pytest.raises(ValueError, match="loss became non-finite in epoch 1"):
        fit(model, X, X * 3, epochs=2, lr=1e30, seed=0)


def test_fit_works_on_any_module_and_calls_back():
    """The trainer knows nothing of RNNs: a Linear learns y = 2x + 1; the callback can stop it."""
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    X = np.linspace(-1, 1, 32).reshape(-1, 1)
    calls = []
    h = fit(model, X, 2 * X + 1, epochs=200, batch_size=8, lr=0.05, seed=0,
            callback=lambda epoch, logs: calls.append((epoch, logs["loss"])) or epoch == 150)
    assert h.epochs == 150 and h.stopped_early and len(calls) == 150
    assert_close(model.weight.detach(), [[2.0]], atol=1e-2, name="learned slope")
    assert_close(model.bias.detach(), [1.0], atol=1e-2, name="learned intercept")
    assert h.loss[-1] < 1e-4


def test_predict_and_evaluate(sunspots):
    Xte, yte = sunspots[2], sunspots[3]
    m = create_rnn(3, 1, (12, 1), seed=0)
    p_all = predict(m, Xte)
    assert p_all.shape == (46, 1)
    assert_close(predict(m, Xte, batch_size=5), p_all, atol=FLOAT32_ATOL, name="batched predict")
    assert_close(p_all, m.predict(Xte), atol=0.0, name="same as model.predict")
    assert m.training, "predict restores the training mode"
    ev = evaluate(m, Xte, yte)
    assert ev["n"] == 46
    assert_close(ev["loss"], float(np.mean((p_all.astype(np.float64) - yte) ** 2)), atol=FLOAT64_ATOL, name="loss")
    assert_close(ev["rmse"], np.sqrt(ev["loss"]), atol=FLOAT64_ATOL, name="rmse")
    assert_close(evaluate(m, Xte, yte[:, 0])["rmse"], ev["rmse"], atol=0.0, name="(N,) targets")


def test_predict_validates_direct_input_and_lets_the_model_choose_chunks(monkeypatch):
    import torchrnn.model as M

    m = create_rnn(3, 1, (12, 1), seed=0)
    x = np.random.default_rng(0).random((1000, 12, 1))
    bad = x.copy()
    bad[700, 5, 0] = np.nan
    with pytest.raises(ValueError, match=r"X holds 1 non-finite value \(first nan at index \(700, 5, 0\)\)"):
        predict(m, bad)
    bad[700, 5, 0] = 1e39
    with pytest.raises(ValueError, match=r"X holds 1 value beyond the range of the model's torch.float32 \(first 1e\+39 at index \(700, 5, 0\)\)"):
        predict(m, bad)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        predict(m, x, batch_size=0)
    whole = predict(m, x, batch_size=1000)
    monkeypatch.setattr(M, "PREDICT_ROW_BYTES", 400 * 3 * 4)  # 400 sequences a chunk
    sizes = []
    handle = m.register_forward_hook(lambda mod, args, out: sizes.append(args[0].shape[0]))
    assert_close(predict(m, x), whole, atol=FLOAT32_ATOL, name="model's chunks vs one batch")
    assert_close(predict(m, torch.from_numpy(x).float()), whole, atol=FLOAT32_ATOL, name="tensor input")
    handle.remove()
    assert sizes == [400, 400, 200] * 2
    # A module without predict_batch_size runs in one batch, as before.
    lin = nn.Linear(3, 2)
    calls = []
    lin.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    assert predict(lin, np.ones((5000, 3), dtype=np.float32)).shape == (5000, 2)
    assert calls == [5000]


def test_progress_bar_on_stderr_only_when_asked(sunspots, capsys):
    Xtr, ytr = sunspots[0][:20], sunspots[1][:20]
    fit(create_rnn(3, 1, (12, 1), seed=0), Xtr, ytr, epochs=2, seed=0)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    h = fit(create_rnn(3, 1, (12, 1), seed=0), Xtr, ytr, epochs=2, seed=0, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    # Not a terminal here: one plain line per epoch, with that epoch's loss, and no bar redraws.
    lines = err.splitlines()
    assert len(lines) == 2 and "\r" not in err
    for epoch, (line, loss) in enumerate(zip(lines, h.loss), 1):
        assert line.startswith(f"Epoch {epoch}/2: 20 batches in ") and line.endswith(f"loss={loss:.4g}")


def test_progress_bar_in_a_terminal(sunspots, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    fit(create_rnn(3, 1, (12, 1), seed=0), sunspots[0][:20], sunspots[1][:20], epochs=2, seed=0, progress=True)
    err = term.getvalue()
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "20/20" in err and "loss=" in err


@pytest.mark.parametrize("columns, bar", [(0, False), (39, False), (40, True), (None, True)])
def test_a_terminal_too_narrow_for_a_bar_gets_the_plain_lines(sunspots, monkeypatch, columns, bar):
    """A terminal that reports 0 columns (its width unknown) made tqdm draw empty lines only."""
    import io
    import sys

    import torchrnn.train as T

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(T, "_terminal_columns", lambda stream: columns)
    h = fit(create_rnn(3, 1, (12, 1), seed=0), sunspots[0][:20], sunspots[1][:20], epochs=2, seed=0, progress=True)
    err = term.getvalue()
    assert ("20/20" in err) == bar
    if not bar:
        assert err.splitlines()[1].startswith("Epoch 2/2: 20 batches in ") and err.endswith(f"loss={h.loss[1]:.4g}\n")


def test_tutorial_fit_learns(sunspots):
    """The tutorial's run (187 windows, 20 epochs, batch size 1). Its speed is measured in bench/,
    not asserted here: wall-clock limits in tests only measure the machine's load."""
    Xtr, ytr = sunspots[0], sunspots[1]
    m = create_rnn(3, 1, (12, 1), seed=0)
    h = fit(m, Xtr, ytr, epochs=20, batch_size=1, seed=0)
    assert len(h.loss) == 20
    assert h.loss[-1] < 0.5 * h.loss[0]


def test_fit_honours_optimizer_step_hooks(sunspots):
    """fit skips torch.optim's step wrapper only when it has nothing to do: a registered hook runs."""
    Xtr, ytr = sunspots[0][:10], sunspots[1][:10]
    m = create_rnn(3, 1, (12, 1), seed=0)
    opt = KerasAdam(m.parameters())
    seen = []
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append(1))
    fit(m, Xtr, ytr, epochs=2, optimizer=opt)
    assert len(seen) == 20


# --------------------------------------------------------------------------- fit's bound buffers

class _SometimesUsed(nn.Module):
    """A Linear plus a parameter that enters the output only for samples with x[0] > 0: in the
    other steps it gets no gradient, and Keras's rule is then "no update" (not a zero-gradient one)."""

    def __init__(self, dtype):
        super().__init__()
        self.lin = nn.Linear(2, 1).to(dtype)
        self.extra = nn.Parameter(torch.tensor([0.5], dtype=dtype))

    def forward(self, x):
        out = self.lin(x)
        return out + self.extra * x[:, :1] if bool(x[0, 0] > 0) else out


def _fit_both_ways(make, X, y, **kw):
    """fit with its own optimizer (parameters bound to flat buffers) and with a KerasAdam handed
    in (never bound); same seed, same data."""
    out = []
    for given in (False, True):
        m = make()
        opt = KerasAdam(m.parameters(), lr=kw.get("lr", 1e-3)) if given else None
        h = fit(m, X, y, optimizer=opt, seed=0, **kw)
        out.append((m, h))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bound_buffers_train_bit_for_bit_like_the_plain_optimizer(sunspots, dtype, monkeypatch):
    import torchrnn.train as T

    monkeypatch.setattr(T, "_NUMPY_FIT", False)  # the bound buffers of the torch path (the NumPy step: below)
    Xtr, ytr = sunspots[0][:40], sunspots[1][:40]
    (a, ha), (b, hb) = _fit_both_ways(lambda: create_rnn(3, 1, (12, 1), seed=0).to(dtype), Xtr, ytr, epochs=3)
    assert ha.loss == hb.loss
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert_close(pa.detach(), pb.detach(), atol=0.0, name=name)
        assert_close(pa.grad, pb.grad, atol=0.0, name=f"{name}.grad after the last step")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bound_buffers_keep_no_gradient_no_update(dtype):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (24, 2))
    y = rng.uniform(-1, 1, (24, 1))

    def make():
        torch.manual_seed(0)
        return _SometimesUsed(dtype)

    (a, ha), (b, hb) = _fit_both_ways(make, X, y, epochs=4, lr=0.05)
    assert ha.loss == hb.loss
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert_close(pa.detach(), pb.detach(), atol=0.0, name=name)
    # The distinction is visible: a zero gradient instead of none moves `extra` on its momentum.
    z = make()
    z.forward = lambda x: z.lin(x) + z.extra * (x[:, :1] if bool(x[0, 0] > 0) else 0.0 * x[:, :1])
    fit(z, X, y, optimizer=KerasAdam(z.parameters(), lr=0.05), seed=0, epochs=4)
    assert not torch.equal(z.extra.detach(), b.extra.detach())


def test_after_fit_parameters_and_grads_own_their_storage(sunspots):
    m = create_rnn(3, 1, (12, 1), seed=0)
    fit(m, sunspots[0][:10], sunspots[1][:10], epochs=1, seed=0)
    for name, p in m.named_parameters():
        for label, t in ((name, p), (f"{name}.grad", p.grad)):
            assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), f"{label} still a view of a flat buffer"
        # the per-run post-accumulate-grad hooks are gone (torch keeps them in this attribute)
        assert not getattr(p, "_post_accumulate_grad_hooks", None), name


@pytest.mark.parametrize("numpy_fit", [False, True])
def test_a_callback_that_moves_parameters_unbinds_the_run(sunspots, monkeypatch, numpy_fit):
    """A callback that gives the parameters new storage: fit must notice, drop the flat buffers
    and go on training the parameters the model now has, with the same numbers (bit for bit on
    the torch path; with the NumPy step, which then gives way to the torch path, to rounding)."""
    import torchrnn.train as T

    monkeypatch.setattr(T, "_NUMPY_FIT", numpy_fit)
    Xtr, ytr = sunspots[0][:30], sunspots[1][:30]

    def move(epoch, logs):
        for p in moved.parameters():
            p.data = p.data.clone()

    moved = create_rnn(3, 1, (12, 1), seed=0)
    h_moved = fit(moved, Xtr, ytr, epochs=3, seed=0, callback=move)
    plain = create_rnn(3, 1, (12, 1), seed=0)
    h_plain = fit(plain, Xtr, ytr, epochs=3, seed=0, optimizer=KerasAdam(plain.parameters()))
    tol = NUMPY_FIT_F32_ATOL if numpy_fit else 0.0
    assert_close(np.array(h_moved.loss), np.array(h_plain.loss), atol=tol, name="epoch losses")
    for (name, pa), pb in zip(moved.named_parameters(), plain.parameters()):
        assert_close(pa.detach(), pb.detach(), atol=tol, name=name)


def test_training_does_not_import_torch_dynamo():
    """torch.optim's add_param_group imports torch._dynamo on first call (0.8 s of start-up);
    KerasAdam and fit must get by without it. A fresh process, since other tests may import it."""
    import subprocess
    import sys
    code = ("import sys, numpy as np\n"
            "from torchrnn import create_rnn\n"
            "from torchrnn.train import KerasAdam, fit\n"
            "m = create_rnn(3, 1, (12, 1), seed=0)\n"
            "h = fit(m, np.random.default_rng(0).random((6, 12, 1)), np.zeros((6, 1)), epochs=2, seed=0)\n"
            "KerasAdam(m.parameters()).add_param_group({'params': [__import__('torch').zeros(1, requires_grad=True)]})\n"
            "print(len(h.loss), 'torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "False"]


def test_bound_gradients_tell_who_received_one():
    """While fit's buffers are bound, each gradient's own version counter says whether autograd
    accumulated into it since zero_grad (Keras's "no gradient, no update" rests on it)."""
    a, b, c = (nn.Parameter(torch.randn(s)) for s in ((2, 3), (4,), (1,)))
    opt = KerasAdam([a, b, c])
    session = opt._flat_session()
    try:
        bucket = session.buckets[0]
        assert bucket.received() == [False, False, False]
        (a.sum() * 2 + b.sum()).backward()
        assert bucket.received() == [True, True, False]
        assert_close(a.grad, np.full((2, 3), 2.0), atol=0.0, name="a.grad in the flat buffer")
        session.zero_grad()
        assert bucket.received() == [False, False, False]  # zeroing the buffer is not a gradient
        (c * 0.0).sum().backward()  # a zero gradient is still a gradient
        (c * 1.0).sum().backward()  # and one accumulated twice is counted once
        assert bucket.received() == [False, False, True]
        c_before, m_before = c.detach().clone(), opt.state[a]["m"].clone()
        opt.step()
        assert not torch.equal(c.detach(), c_before)
        assert_close(opt.state[a]["m"], m_before, atol=0.0, name="moments of a parameter without a gradient")
    finally:
        session.close()


def test_fit_and_predict_read_inputs_as_the_model_does_and_name_the_whole_shape():
    # torchrnn.predict and fit refused the 2-D (N, L) array that model.predict reads as
    # (N, L, 1), and a wrong shape was reported as one batch of it: "got (1, 12)"
    rng = np.random.default_rng(3)
    X, y = rng.uniform(-1, 1, (20, 12)), rng.uniform(-1, 1, (20, 1))
    m2, m3 = create_rnn(3, 1, (12, 1), seed=1), create_rnn(3, 1, (12, 1), seed=1)
    fit(m2, X, y, epochs=2, seed=0)
    fit(m3, X[..., None], y, epochs=2, seed=0)
    for a, b in zip(m2.get_weights(), m3.get_weights()):
        assert np.array_equal(a, b)
    assert np.array_equal(predict(m2, X), m2.predict(X[..., None]))
    with pytest.raises(ValueError, match=r"^expected input of shape \(batch, 12, 1\), got \(20, 5, 1\)"):
        fit(m2, X[:, :5, None], y, epochs=1)
    with pytest.raises(ValueError, match=r"expected X of shape \(batch, 3, 2\), got \(20, 12\) \(a 2-D"):
        predict(create_rnn(3, 1, (3, 2), seed=0), X)
    states = m2.hidden_states(X[:4])  # an array, as predict takes it
    assert [tuple(s.shape) for s in states] == [(4, 12, 3)]
    assert_close(states[0][:, -1].detach().numpy(), m2.hidden_states(torch.tensor(X[:4, :, None],
                 dtype=torch.float32))[0][:, -1].detach().numpy(), atol=0.0, name="hidden_states(array)")


# ----------------------------------------------------------------- fit's NumPy step

# The NumPy step computes the torch path's formulas; products of a few terms summed in another
# order differ by an ulp or so per step. After a few epochs of Adam (whose update divides by
# sqrt(v), amplifying relative differences where gradients are tiny) float32 weights stay within
# 1e-5 of the torch path's; in float64 the same drift is ~1e-13.
NUMPY_FIT_F32_ATOL = 1e-5

NUMPY_FIT_CONFIGS = [
    dict(hidden_units=3, dense_units=1, input_shape=(12, 1), activation=("tanh", "tanh")),
    dict(hidden_units=[4, 3], dense_units=2, input_shape=(5, 2), activation=(["tanh", "linear"], "linear"),
         use_bias=[False, True], go_backwards=[True, False]),
    dict(hidden_units=[2, 3], dense_units=1, input_shape=(1, 3), activation=("linear", "tanh"),
         dense_use_bias=False, go_backwards=True),
]


def _numpy_step_for(model):
    import torchrnn.train as T

    opt = KerasAdam(model.parameters(), lr=1e-3)
    session = opt._flat_session()
    return T._NumpyFitStep.plan(model, opt, session, 4), session


@pytest.mark.parametrize("cfg", NUMPY_FIT_CONFIGS)
def test_numpy_step_gradients_are_autograds(cfg):
    model = create_rnn(**cfg, seed=2).to(torch.float64)
    steps, feats = cfg["input_shape"]
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-1, 1, (4, steps, feats)), rng.uniform(-1, 1, (4, cfg["dense_units"]))
    loss_ref = nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y))
    want = torch.autograd.grad(loss_ref, list(model.parameters()))
    step, session = _numpy_step_for(model)
    assert step is not None
    loss = step(x, y)
    assert_close(np.array(loss), loss_ref.detach().numpy(), atol=FLOAT64_ATOL, name="loss")
    for (name, p), g in zip(model.named_parameters(), want):
        assert_close(p.grad, g, atol=FLOAT64_ATOL, name=f"{name}.grad")
    session.close()


@pytest.mark.parametrize("dtype, atol", [(torch.float32, NUMPY_FIT_F32_ATOL), (torch.float64, FLOAT64_ATOL)])
@pytest.mark.parametrize("cfg", NUMPY_FIT_CONFIGS)
def test_fit_with_the_numpy_step_trains_as_the_torch_path(cfg, dtype, atol, monkeypatch):
    import torchrnn.train as T

    steps, feats = cfg["input_shape"]
    rng = np.random.default_rng(9)
    X, y = rng.uniform(-1, 1, (23, steps, feats)), rng.uniform(-0.5, 0.5, (23, cfg["dense_units"]))
    runs = {}
    for numpy_fit in (True, False, True):
        monkeypatch.setattr(T, "_NUMPY_FIT", numpy_fit)
        m = create_rnn(**cfg, seed=4).to(dtype)
        h = fit(m, X, y, epochs=3, batch_size=5, seed=1)  # 5 batches, the last of 3
        if numpy_fit in runs:  # the same seed repeats the NumPy run bit for bit
            assert h.loss == runs[numpy_fit][0].loss
        runs[numpy_fit] = (h, m)
    (hn, mn), (ht, mt) = runs[True], runs[False]
    assert_close(np.array(hn.batch_loss), np.array(ht.batch_loss), atol=atol, name="batch losses")
    for (name, pn), pt in zip(mn.named_parameters(), mt.parameters()):
        assert_close(pn.detach(), pt.detach(), atol=atol, name=name)
        assert_close(pn.grad, pt.grad, atol=atol, name=f"{name}.grad after the last step")
    for p in mn.parameters():  # the run's buffers are given back as on the torch path
        assert p.grad is not None and p.untyped_storage().nbytes() == p.numel() * p.element_size()


def test_the_numpy_step_is_taken_only_where_it_computes_what_torch_would():
    import torchrnn.train as T

    base = dict(hidden_units=3, dense_units=1, input_shape=(12, 1))
    assert _numpy_step_for(create_rnn(**base))[0] is not None
    for model in (create_rnn(**base, activation=("relu", "tanh")),       # torch's kernels
                  create_rnn(**base, activation=("tanh", "sigmoid")),
                  create_rnn(**base, return_sequences=True),
                  create_rnn(3, None, (12, 1), "tanh"),
                  create_rnn(**base).use_fused_kernel(True),
                  create_rnn(500, 1, (12, 1))):                           # a row of 4 x 500 values: torch's BLAS
        assert _numpy_step_for(model)[0] is None, model
    hooked = create_rnn(**base)
    seen = []
    hooked.dense.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    assert _numpy_step_for(hooked)[0] is None
    fit(hooked, np.zeros((3, 12, 1)), np.zeros((3, 1)), epochs=1)
    assert len(seen) == 1 + 3, "the hook saw the shape look and every step"
    m = create_rnn(**base)
    assert T._NumpyFitStep.plan(m, KerasAdam(m.parameters()), None, 1) is None  # not bound: not fit's own


def test_the_numpy_step_gives_way_to_torch_for_tied_weights_no_grad_and_what_callbacks_change():
    import torchrnn.train as T

    # tied: autograd sums both layers' gradients into the one weight; the NumPy step would not
    tied = create_rnn([3, 3], 2, (5, 2), ("tanh", "linear"), seed=7)
    tied.rnn[1].weight_hh = tied.rnn[0].weight_hh
    assert _numpy_step_for(tied)[0] is None
    with torch.no_grad():  # the torch path refuses to train here; so must fit, on any path
        assert _numpy_step_for(create_rnn(3, 1, (12, 1)))[0] is None
    rng = np.random.default_rng(0)
    X, y = rng.uniform(-1, 1, (13, 5, 2)), rng.uniform(-1, 1, (13, 2))

    def frozen_after_epoch_1():
        m = create_rnn([4, 3], 2, (5, 2), (["tanh", "linear"], "linear"), seed=1)
        seen = {}

        def cb(epoch, logs):
            if epoch == 1:
                seen["w"] = m.rnn[0].weight_ih.detach().clone()
                m.rnn[0].weight_ih.requires_grad_(False)
                m.dense.register_forward_hook(lambda mod, inp, out: seen.setdefault("calls", []).append(1))
        fit(m, X, y, epochs=3, seed=0, callback=cb)
        return m, seen

    m, seen = frozen_after_epoch_1()
    assert torch.equal(m.rnn[0].weight_ih.detach(), seen["w"]), "a weight frozen by a callback stays put"
    assert len(seen["calls"]) == 2 * 13, "a hook registered by a callback sees every later step"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(T, "_NUMPY_FIT", False)
        mt, _ = frozen_after_epoch_1()
    for (name, pa), pb in zip(m.named_parameters(), mt.parameters()):
        assert_close(pa.detach(), pb.detach(), atol=NUMPY_FIT_F32_ATOL, name=name)
