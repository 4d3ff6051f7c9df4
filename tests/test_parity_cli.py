"""`torchrnn-parity MODEL_FILE`: verdicts, exit codes, JSON, and no TensorFlow on the file path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity.cli import EXIT_BAD_INPUT, EXIT_MISMATCH, EXIT_OK, main

FIXTURES = Path(__file__).parent / "fixtures" / "keras"


def test_parity_on_a_keras2_file_prints_the_table(capsys):
    assert main([str(FIXTURES / "stacked.k2.h5")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "torch vs numpy: simple_rnn_1" in out and "PARITY" in out


def test_json_report_numbers(capsys):
    assert main([str(FIXTURES / "multifeature.keras"), "--json", "--batch", "5"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["input_shape"] == [5, 3, 2]
    assert report["implementations"] == ["torch", "numpy"]
    assert all(c["max_abs"] <= 1e-5 for c in report["comparisons"])
    assert {c["name"] for c in report["comparisons"]} == {"torch vs numpy: simple_rnn", "torch vs numpy: output"}


def test_zero_tolerance_is_a_mismatch_with_exit_1(capsys):
    # float32 torch against float64 NumPy cannot agree to the last bit
    assert main([str(FIXTURES / "demo_tanh.keras"), "--atol", "0", "--rtol", "0"]) == EXIT_MISMATCH
    assert "MISMATCH" in capsys.readouterr().out


def test_given_input_file(tmp_path, capsys):
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 1))
    np.save(tmp_path / "x.npy", x)
    assert main([str(FIXTURES / "demo_linear.k3.h5"), "--input", str(tmp_path / "x.npy"), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["input_shape"] == [4, 3, 1]


@pytest.mark.parametrize("make_args, message", [
    (lambda d: [str(FIXTURES / "bad_lstm.keras")], "LSTM"),
    (lambda d: [str(FIXTURES / "demo_tanh.weights.h5")], "no architecture"),
    (lambda d: [str(d / "missing.keras")], "missing.keras"),
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--input", str(d / "wrong.npy")], r"got (2, 5, 1)"),
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--input", str(d / "nope.npy")], "cannot read --input"),
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--batch", "0"], "--batch must be at least 1"),
    # --batch and --seed with --input were ignored without a word
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--input", str(d / "nan.npy"), "--batch", "3"],
     "--batch sizes the random batch; with --input "),
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--input", str(d / "nan.npy"), "--seed", "1", "--batch", "3"],
     "--batch and --seed set the random batch"),
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--input", ""], "--input '' is empty; give a .npy file"),
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--input", str(d / "nan.npy")],
     "nan.npy holds 1 non-finite value (first nan at index (1, 2, 0))"),
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    # 1e12 sequences: terabytes, refused before anything is allocated (the system could grant the
    # allocation and kill the process while filling it)
    (lambda d: [str(FIXTURES / "demo_tanh.keras"), "--batch", str(10**12)],
     "--batch 1000000000000 needs at least 1.32e+05 GB for the input and the states (3 steps, 1 features, units [2])"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make_args, message):
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5, 1)))
    nan = np.zeros((2, 3, 1))
    nan[1, 2, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    assert main(make_args(tmp_path)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("torchrnn-parity: error:") and message in err and "Traceback" not in err


def test_running_out_of_memory_is_bad_input_not_a_mismatch(monkeypatch, capsys):
    check_module = sys.modules["parity.check"]  # `parity.check` is the function the package exports

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 89.4 GiB for an array with shape (4000000000, 3, 1)")

    monkeypatch.setattr(check_module, "check", too_big)
    assert main([str(FIXTURES / "demo_tanh.keras"), "--batch", "4000"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == ("torchrnn-parity: error: out of memory (Unable to allocate 89.4 GiB for an array with shape "
                   "(4000000000, 3, 1)) with --batch 4000; try a smaller batch\n")


def test_file_path_never_imports_tensorflow_nor_unneeded_libraries():
    # scipy is the NumPy referee's source of sigmoid and gelu only; a tanh model must not pay
    # for importing it, nor for scikit-learn, pandas or matplotlib, which parity never uses;
    # sympy came in through torch.nn.utils.skip_init's meta-device path (0.3-0.45 s).
    code = ("import sys; from parity.cli import main; rc = main([sys.argv[1], '--json']); "
            "heavy = ('tensorflow', 'keras', 'tf_keras', 'scipy', 'sklearn', 'pandas', 'matplotlib', 'sympy'); "
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))")
    out = subprocess.run([sys.executable, "-c", code, str(FIXTURES / "functional.k2.h5")], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    assert out == "0 []"


def test_with_keras_three_implementations(capsys):
    pytest.importorskip("keras", reason="the test extra installs Keras")
    assert main([str(FIXTURES / "return_sequences.keras"), "--keras", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["implementations"] == ["torch", "numpy", "keras"]
    assert max(c["max_abs"] for c in report["comparisons"]) <= 1e-5


@pytest.mark.parametrize("flags, message", [
    (["--atol", "-1"], "--atol must be a finite number >= 0, got -1.0"),
    (["--rtol", "nan"], "--rtol must be a finite number >= 0, got nan"),
])
def test_bad_tolerances_are_bad_input_not_a_mismatch(flags, message, capsys):
    assert main([str(FIXTURES / "demo_tanh.keras"), *flags]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_empty_input_is_refused_not_a_vacuous_pass(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3, 1)))
    assert main([str(FIXTURES / "demo_tanh.keras"), "--input", str(tmp_path / "empty.npy")]) == EXIT_BAD_INPUT
    assert f"--input {tmp_path / 'empty.npy'} is empty (shape (0, 3, 1))" in capsys.readouterr().err


def test_keras_that_cannot_read_a_keras2_file_is_a_note_and_exit_2(capsys):
    """Keras 3 refuses some Keras 2 files (time_major); torchrnn reads them, and says Keras did not.
    --keras asked for a Keras comparison: without one the exit status is not 0 (it was)."""
    pytest.importorskip("keras", reason="the test extra installs Keras")
    path = FIXTURES / "demo_tanh.k2.h5"
    assert main([str(path), "--keras"]) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert "could not load" in out and "implementations: torch, numpy;" in out
    assert err == (f"torchrnn-parity: error: --keras: Keras could not load {path} (see the note), so it was not "
                   f"compared; only torch and the NumPy referee were\n")
    assert main([str(path)]) == EXIT_OK, "without --keras nothing was asked of Keras"


def _float64_copy(tmp_path, name="demo_tanh.keras"):
    """The fixture with every weight stored as float64 and a float64 dtype policy, as Keras writes
    a model built under keras.config.set_floatx('float64')."""
    import io
    import zipfile

    import h5py

    src, dst = FIXTURES / name, tmp_path / f"f64_{name}"
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(members["config.json"])
    for layer in config["config"]["layers"]:
        if isinstance(layer["config"].get("dtype"), dict):
            layer["config"]["dtype"]["config"]["name"] = "float64"
    members["config.json"] = json.dumps(config).encode()
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "r+") as h5:
        paths = []
        h5.visititems(lambda p, obj: paths.append(p) if isinstance(obj, h5py.Dataset) else None)
        for p in paths:
            data = h5[p][()].astype(np.float64)
            del h5[p]
            h5.create_dataset(p, data=data)
    members["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(dst, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return dst, len(paths)


def test_float64_weights_are_said_to_be_compared_in_float32(tmp_path, capsys):
    # torchrnn computes in float32: a float64 Keras model is rounded on the way in, and the
    # report says so instead of implying a float64 comparison.
    path, n = _float64_copy(tmp_path)
    assert main([str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    note = (f"note: weights stored as float64 in the file ({n} arrays, e.g. 'model.weights.h5:layers/simple_rnn/"
            f"cell/vars/0') were loaded into a torch float32 model: compared in float32, not at the file's precision")
    assert note in out
    assert main([str(path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["notes"] == [note[len("note: "):]]
    assert main([str(FIXTURES / "demo_tanh.keras")]) == EXIT_OK
    assert "note:" not in capsys.readouterr().out, "float32 files get no note"


@pytest.mark.parametrize("kind, needle", [
    ("npz", "is a zip archive (.npz: numpy.savez)"),
    ("text", "is not a .npy file (no NumPy header)"),
    ("strings", "holds <U1 values"),
    ("complex", "holds complex128 values"),
])
def test_input_in_another_format_says_which_format_input_takes(tmp_path, capsys, kind, needle):
    # an .npz used to give "could not convert string to float: 'x'", a text file numpy's advice on pickles
    path = tmp_path / f"x_{kind}.npy"
    x = np.zeros((2, 3, 1))
    if kind == "npz":
        path = tmp_path / "x.npz"
        np.savez(path, x=x)
    elif kind == "text":
        path.write_text("0 0 0\n")
    elif kind == "strings":
        np.save(path, np.array([["a"]]))
    else:
        np.save(path, x.astype(complex))
    assert main([str(FIXTURES / "demo_tanh.keras"), "--input", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"--input {path} {needle}" in err
    assert "--input takes one numeric array saved with numpy.save (.npy)" in err and len(err.splitlines()) == 1


def test_help_says_the_steps_of_a_variable_length_model_as_check_uses_them(capsys):
    from parity import cli
    from parity.check import DEFAULT_STEPS_IF_VARIABLE

    assert cli.DEFAULT_STEPS_IF_VARIABLE == DEFAULT_STEPS_IF_VARIABLE
    with pytest.raises(SystemExit):
        main(["--help"])
    assert f"of {DEFAULT_STEPS_IF_VARIABLE} steps for a model whose number of steps is variable" in \
        " ".join(capsys.readouterr().out.split())
