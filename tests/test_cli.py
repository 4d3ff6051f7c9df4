"""torchrnn.cli (``torchrnn train`` / ``torchrnn predict``) and torchrnn.experiment, end to end, in-process."""
import csv
import io
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from parity.compare import FLOAT64_ATOL, assert_close
from torchrnn import cli
from torchrnn import data as D
from torchrnn import experiment as E
from torchrnn.cli import main

EMBEDDED_CSV = Path(__file__).resolve().parents[1] / "torchrnn" / "data" / "monthly-sunspots.csv"
METRIC_KEYS = {"rmse", "units", "n_windows", "loss", "fit_seconds", "training", "windows", "model_config",
               "count_params", "data"}


def _train(out, *extra):
    return main(["train", "--epochs", "2", "--out", str(out), "--quiet", *extra])


def _raw_series():
    """The embedded CSV read independently of torchrnn.data (the csv module, second column)."""
    with open(EMBEDDED_CSV, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    return np.array([float(r[1]) for r in rows[1:] if r], dtype=np.float64)


@pytest.fixture(autouse=True)
def torch_threads():
    """main() sets torch's thread count for the whole process (the CLI owns its process); give
    the count back after each test, so no other test runs with what a CLI test chose."""
    before = torch.get_num_threads()
    try:
        yield before
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tutorial_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tutorial"
    before = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        rc = _train(out)
    finally:
        torch.set_num_threads(before)
    assert rc == 0
    return out, time.perf_counter() - t0


def _read_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


# --------------------------------------------------------------------------- train, end to end

def test_train_writes_the_files_and_honest_metrics(tutorial_run, capsys):
    out, _ = tutorial_run
    for name in cli.OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "no temporary files left"
    m = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(m)
    assert m["n_windows"] == {"train": 187, "test": 46}
    assert m["windows"]["time_steps"] == 12 and m["windows"]["stride"] == 12 and m["windows"]["scale_on"] == "train"
    assert len(m["loss"]) == 2 and m["count_params"] == 19
    assert m["data"]["n_values"] == 2820 and m["data"]["source"] == D.EMBEDDED_SOURCE

    # The persistence baseline recomputed from the raw file: targets at 12, 24, ... in each part,
    # forecast = the value just before; the scaler is the training part's min/max.
    v = _raw_series()
    split = int(len(v) * 0.8)
    lo, hi = v[:split].min(), v[:split].max()
    for part, offset, n in (("train", 0, 187), ("test", split, 46)):
        t = offset + 12 * np.arange(1, n + 1)
        expected = float(np.sqrt(np.mean((v[t] - v[t - 1]) ** 2)))
        got = m["rmse"][part]["persistence"]
        assert_close(got["original"], expected, atol=FLOAT64_ATOL, name=f"{part} persistence, sunspots")
        assert_close(got["scaled"], expected / (hi - lo), atol=FLOAT64_ATOL, name=f"{part} persistence, scaled")
        model = m["rmse"][part]["model"]
        assert 0 < model["scaled"] < 0.5
        # MinMax scaling is linear: RMSE in sunspots = RMSE scaled * (max - min).
        assert_close(model["original"], model["scaled"] * (hi - lo), atol=1e-9, name=f"{part} model units")


def test_train_prints_the_table_and_where_files_went(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "r"), "--time-steps", "24"]) == 0
    out, err = capsys.readouterr()
    assert "data: embedded:" in out and "windows: 93 train / 23 test of 24 steps" in out
    assert "persistence" in out and "model" in out and "Sunspots" in out
    assert f"wrote {tmp_path / 'r'}" in out
    assert "Epoch 1/1" in err, "progress bar on stderr unless --quiet"


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main(["train", "--epochs", "1", "--seed", seed, "--out", str(tmp_path / name), "--quiet"]) == 0
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        ck = torch.load(tmp_path / name / "model.pt", weights_only=True)
        runs[name] = (m["rmse"], m["loss"], ck["model_state"])
    (ra, la, wa), (rb, lb, wb), (rc, lc, wc) = runs["a"], runs["b"], runs["c"]
    assert ra == rb and la == lb
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert ra != rc and la != lc
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_scale_on_all_is_the_tutorial_scaler(tmp_path):
    assert main(["train", "--epochs", "1", "--scale-on", "all", "--out", str(tmp_path), "--quiet"]) == 0
    ck = torch.load(tmp_path / "model.pt", weights_only=True)
    v = _raw_series()
    assert ck["scaler"]["data_max"] == v.max() == 253.8  # the maximum lies in the test part
    assert ck["scaler"]["data_min"] == v.min()


def test_stacked_layers_and_options_reach_the_model(tmp_path):
    argv = ["train", "--epochs", "1", "--hidden-units", "4", "2", "--activation", "relu", "linear",
            "--batch-size", "16", "--lr", "0.01", "--stride", "6", "--split", "0.7", "--time-steps", "10",
            "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    ck = torch.load(tmp_path / "model.pt", weights_only=True)
    cfg = ck["model_config"]
    assert tuple(cfg["hidden_units"]) == (4, 2) and tuple(cfg["activation"][0]) == ("relu", "relu")
    assert cfg["activation"][1] == "linear" and tuple(cfg["input_shape"]) == (10, 1)
    assert ck["training"]["batch_size"] == 16 and ck["training"]["lr"] == 0.01
    assert ck["windows"]["stride"] == 6 and ck["windows"]["split"] == 0.7
    n_train = int(2820 * 0.7)
    assert ck["windows"]["n_train"] == len(range(10, n_train, 6))


# --------------------------------------------------------------------------- checkpoint and predict

def test_checkpoint_round_trip_gives_identical_predictions(tutorial_run):
    out, _ = tutorial_run
    ck = torch.load(out / "model.pt", weights_only=True)  # plain containers and tensors only
    assert ck["format"] == E.CHECKPOINT_FORMAT and ck["version"] == E.CHECKPOINT_VERSION == 2
    assert set(ck["scaler"]) == {"data_min", "data_max", "feature_range"}
    assert ck["data"]["sha256"] == D.read_series().sha256
    assert ck["windows"] == {"time_steps": 12, "stride": 12, "split": 0.8, "scale_on": "train",
                             "n_train_values": 2256, "n_train": 187, "n_test": 46}
    model, _ = E.load_checkpoint(out / "model.pt")
    prep = E.prepare_from_checkpoint(ck, None)
    # Fresh windows from a fresh scaler agree with the checkpoint's scaler bit for bit.
    fresh = E.prepare(None, time_steps=12, split=0.8, scale_on="train")
    assert_close(prep.X_test, fresh.X_test, atol=0.0, name="windows from the saved scaler")
    p1 = model.predict(prep.X_test)
    p2, _ = E.load_checkpoint(out / "model.pt")
    assert_close(p2.predict(prep.X_test), p1, atol=0.0, name="two loads, same predictions")
    # And the test RMSE recorded at training time is reproduced from the checkpoint alone.
    recorded = json.loads((out / "metrics.json").read_text())["rmse"]["test"]["model"]["scaled"]
    assert_close(float(np.sqrt(np.mean((p1.astype(np.float64) - prep.y_test) ** 2))), recorded,
                 atol=1e-12, name="test RMSE from the checkpoint")


def test_predict_writes_csv_matching_the_model(tutorial_run, tmp_path, capsys):
    out, _ = tutorial_run
    csv_path = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(out / "model.pt"), "--out", str(csv_path)]) == 0
    rows = _read_csv(csv_path.read_text())
    assert list(rows[0]) == ["part", "window", "target_index", "actual", "predicted", "actual_scaled",
                             "predicted_scaled"]
    train = [r for r in rows if r["part"] == "train"]
    test = [r for r in rows if r["part"] == "test"]
    assert len(train) == 187 and len(test) == 46
    v = _raw_series()
    assert [int(r["target_index"]) for r in test[:2]] == [2268, 2280]
    for r in train[:3] + test[-3:]:
        assert float(r["actual"]) == v[int(r["target_index"])]
    model, ck = E.load_checkpoint(out / "model.pt")
    prep = E.prepare_from_checkpoint(ck, None)
    assert_close(np.array([float(r["predicted_scaled"]) for r in test]), model.predict(prep.X_test)[:, 0],
                 atol=0.0, name="CSV predictions")
    lo, hi = ck["scaler"]["data_min"], ck["scaler"]["data_max"]
    assert_close(np.array([float(r["predicted"]) for r in test]),
                 np.array([float(r["predicted_scaled"]) for r in test]) * (hi - lo) + lo,
                 atol=1e-9, name="predictions in sunspots")
    err = capsys.readouterr().err
    assert "test: 46 windows" in err and str(csv_path) in err


def test_predict_whole_series_to_stdout(tutorial_run, capsys):
    out, _ = tutorial_run
    assert main(["predict", "--checkpoint", str(out / "model.pt"), "--whole", "--quiet"]) == 0
    captured = capsys.readouterr()
    rows = _read_csv(captured.out)
    assert captured.err == ""
    assert len(rows) == len(range(12, 2820, 12)) == 234 and {r["part"] for r in rows} == {"all"}
    assert int(rows[187]["target_index"]) == 2256  # the window that straddles the split


def test_predict_on_other_data_notes_it(tutorial_run, tmp_path, capsys):
    out, _ = tutorial_run
    other = tmp_path / "other.csv"
    vals = _raw_series()[:600] * 0.5
    other.write_text("Month,Sunspots\n" + "".join(f"m{i},{x}\n" for i, x in enumerate(vals)))
    assert main(["predict", "--checkpoint", str(out / "model.pt"), "--data", str(other), "--out",
                 str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    assert "is not the data the model was trained on" in err
    rows = _read_csv((tmp_path / "p.csv").read_text())
    assert len(rows) == len(range(12, 480, 12)) + len(range(12, 120, 12))


# --------------------------------------------------------------------------- --threads

OTHER_THREADS = 3  # not the CLI default (1), so "left alone" and "set to 1" cannot look the same


def test_threads_default_is_one_and_recorded(tutorial_run):
    m = json.loads((tutorial_run[0] / "metrics.json").read_text())
    assert m["training"]["threads"] == 1
    ck = torch.load(tutorial_run[0] / "model.pt", weights_only=True)
    assert ck["training"]["threads"] == 1


@pytest.mark.parametrize("flags, expected", [([], 1), (["--threads", "2"], 2), (["--threads", "0"], OTHER_THREADS)])
def test_predict_threads_reach_torch(tutorial_run, tmp_path, flags, expected):
    torch.set_num_threads(OTHER_THREADS)
    assert main(["predict", "--checkpoint", str(tutorial_run[0] / "model.pt"), "--out", str(tmp_path / "p.csv"),
                 "--quiet", *flags]) == 0
    assert torch.get_num_threads() == expected


@pytest.mark.parametrize("value, expected", [("2", 2), ("0", OTHER_THREADS)])
def test_train_threads_reach_torch_and_metrics(tmp_path, value, expected):
    # "0" also shows that fit, predict and the rest of the library leave the count alone.
    torch.set_num_threads(OTHER_THREADS)
    assert main(["train", "--epochs", "1", "--out", str(tmp_path), "--quiet", "--threads", value]) == 0
    assert torch.get_num_threads() == expected
    assert json.loads((tmp_path / "metrics.json").read_text())["training"]["threads"] == expected


@pytest.mark.parametrize("command", [["train"], ["predict", "--checkpoint", "model.pt"]])
@pytest.mark.parametrize("value", ["-1", "1.5", "two", ""])
def test_bad_threads_are_usage_errors_naming_the_value(command, value, capsys):
    before = torch.get_num_threads()
    rc = main([*command, "--threads", value])
    lines = _one_line_error(capsys, rc, "--threads", repr(value))
    assert lines[0].startswith("usage:"), "argparse's usage line, then the one error line"
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("command", [["train"], ["predict", "--checkpoint", "model.pt"]])
@pytest.mark.parametrize("value", ["100000", "99999999999", str(cli.MAX_THREADS + 1)])
def test_too_many_threads_are_refused_naming_the_limit(command, value, capsys):
    # torch starts what it is given: 20000 threads failed in libgomp, 100000 segfaulted.
    before = torch.get_num_threads()
    _one_line_error(capsys, main([*command, "--threads", value]), "--threads", repr(value),
                    f"from 1 to {cli.MAX_THREADS}")
    assert torch.get_num_threads() == before
    assert cli.build_parser().parse_args(["train", "--threads", str(cli.MAX_THREADS)]).threads == cli.MAX_THREADS
    assert cli.MAX_THREADS == max(64, 4 * (os.cpu_count() or 1))


@pytest.mark.parametrize("value", ["99999999999999999999999", str(2**64), str(2**32), "-1"])
def test_seed_beyond_torch_range_is_a_usage_error_naming_it(value, capsys):
    # used to be "Overflow when unpacking long long", without --seed or the value; 2**32 and -1
    # were taken and gave the runs of seeds 0 and 2**32 - 1
    _one_line_error(capsys, main(["train", "--seed", value]), "--seed", repr(value), "from 0 to 2**32 - 1")


# --------------------------------------------------------------------------- errors, exit codes

def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("torchrnn"), err
    for n in needles:
        assert n in lines[-1], err
    return lines


def test_missing_and_corrupt_checkpoints(tutorial_run, tmp_path, capsys):
    out, _ = tutorial_run
    assert len(_one_line_error(capsys, main(["predict", "--checkpoint", str(tmp_path / "nope.pt")]),
                               "no such file")) == 1
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    _one_line_error(capsys, main(["predict", "--checkpoint", str(bad)]), "not a PyTorch checkpoint")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes((out / "model.pt").read_bytes()[:2000])
    _one_line_error(capsys, main(["predict", "--checkpoint", str(trunc)]), "trunc.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    _one_line_error(capsys, main(["predict", "--checkpoint", str(other)]), "not a torchrnn checkpoint")
    ck = torch.load(out / "model.pt", weights_only=True)
    ck["model_config"]["hidden_units"] = (5,)
    wrong = tmp_path / "wrong.pt"
    E.save_checkpoint(wrong, ck)  # digests recomputed: the config itself disagrees with the weights
    _one_line_error(capsys, main(["predict", "--checkpoint", str(wrong)]), "inconsistent")


def _flip_bit_in_tensor_data(src, dst):
    """Copy a torch checkpoint, flipping one bit in the stored bytes of one tensor (not in the
    pickle): the damage torch's zip reader, which does not check CRCs, lets through. Returns
    the name of the tensor whose data was hit."""
    import zipfile

    raw = bytearray(Path(src).read_bytes())
    before = torch.load(src, weights_only=True)["model_state"]
    with zipfile.ZipFile(src) as z:
        # the largest storage: the recurrent kernel of the tutorial model
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    raw[info.header_offset + 30 + name_len + extra_len + 3] ^= 0x01
    Path(dst).write_bytes(bytes(raw))
    after = torch.load(dst, weights_only=True)["model_state"]
    hit = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(hit) == 1, hit
    return hit[0]


def test_a_bit_flipped_in_the_weights_is_refused_naming_file_and_tensor(tutorial_run, tmp_path, capsys):
    flipped = tmp_path / "bitflip.pt"
    tensor = _flip_bit_in_tensor_data(tutorial_run[0] / "model.pt", flipped)
    with pytest.raises(E.CheckpointError, match=rf"checkpoint {flipped}: tensor {tensor} is damaged"):
        E.load_checkpoint(flipped)
    _one_line_error(capsys, main(["predict", "--checkpoint", str(flipped), "--quiet"]), str(flipped), tensor,
                    "damaged")


def test_weights_edited_without_their_digest_are_refused_and_old_checkpoints_load(tutorial_run, tmp_path):
    ck = torch.load(tutorial_run[0] / "model.pt", weights_only=True)
    assert set(ck["model_state_sha256"]) == set(ck["model_state"])
    ck["model_state"]["dense.bias"] = ck["model_state"]["dense.bias"] + 1
    torch.save(ck, tmp_path / "edited.pt")
    with pytest.raises(E.CheckpointError, match="tensor dense.bias is damaged"):
        E.load_checkpoint(tmp_path / "edited.pt")
    # save_checkpoint records the digests of what it saves, so a deliberate edit saved through it loads
    E.save_checkpoint(tmp_path / "resaved.pt", ck)
    E.load_checkpoint(tmp_path / "resaved.pt")
    # a version-2 checkpoint whose digests were dropped (with an edit) is refused
    del ck["model_state_sha256"]
    ck["model_state"]["dense.bias"] += 1
    torch.save(ck, tmp_path / "stripped.pt")
    with pytest.raises(E.CheckpointError, match="model_state_sha256 is missing \\(a version-2 checkpoint"):
        E.load_checkpoint(tmp_path / "stripped.pt")
    # checkpoints written before the digests existed (version 1) load without the check (documented)
    del ck["content_sha256"]
    ck["version"] = 1
    torch.save(ck, tmp_path / "old.pt")
    model, _ = E.load_checkpoint(tmp_path / "old.pt")
    assert torch.equal(model.dense.bias.detach(), ck["model_state"]["dense.bias"])


def _flip_bit_in_pickled_float(src, dst, value):
    """Copy a torch checkpoint, flipping the lowest bit of the float ``value`` where the pickle
    stores it (BINFLOAT, 8 bytes big-endian): damage to a plain entry, not to a tensor."""
    import struct

    raw = bytearray(Path(src).read_bytes())
    packed = b"G" + struct.pack(">d", value)
    at = raw.find(packed)
    assert at > 0 and raw.find(packed, at + 1) == -1, "the float must be stored exactly once"
    raw[at + 8] ^= 0x01
    Path(dst).write_bytes(bytes(raw))


def test_a_bit_flipped_in_the_scaler_is_refused_naming_the_key(tutorial_run, tmp_path, capsys):
    src = tutorial_run[0] / "model.pt"
    ck = torch.load(src, weights_only=True)
    assert set(ck["content_sha256"]) == set(E.CONTENT_KEYS)
    flipped = tmp_path / "scaler-bitflip.pt"
    _flip_bit_in_pickled_float(src, flipped, ck["scaler"]["data_max"])
    damaged = torch.load(flipped, weights_only=True)
    # the damage is real and silent to torch: a data_max one ulp off, every forecast rescaled by it
    assert damaged["scaler"]["data_max"] != ck["scaler"]["data_max"]
    assert abs(damaged["scaler"]["data_max"] - ck["scaler"]["data_max"]) < 1e-9
    with pytest.raises(E.CheckpointError, match=rf"checkpoint {flipped}: scaler is damaged or was edited"):
        E.load_checkpoint(flipped)
    _one_line_error(capsys, main(["predict", "--checkpoint", str(flipped), "--quiet"]), str(flipped), "scaler")


@pytest.mark.parametrize("key, edit", [
    ("scaler", lambda d: d.update(data_max=d["data_max"] * 2)),  # valid, and halves every scaled value
    ("windows", lambda d: d.update(split=0.7)),
    ("windows", lambda d: d.update(stride=1)),
    ("model_config", lambda d: d.update(activation=("relu", "tanh"))),
    ("data", lambda d: d.update(sha256="0" * 64)),
    ("training", lambda d: d.update(lr=0.1)),
    ("metrics", lambda d: d["rmse"]["test"]["model"].update(original=1.0)),
])
def test_entries_edited_without_their_digest_are_refused_naming_the_key(tutorial_run, tmp_path, key, edit):
    # Each edit loads as a plausible checkpoint (the checks of test_edited_checkpoints pass), so
    # before content digests it predicted other numbers, or reported other ones, without a word.
    ck = torch.load(tutorial_run[0] / "model.pt", weights_only=True)
    edit(ck[key])
    edited = tmp_path / "edited.pt"
    torch.save(ck, edited)
    with pytest.raises(E.CheckpointError, match=rf"checkpoint {edited}: {key} is damaged or was edited"):
        E.load_checkpoint(edited)
    E.save_checkpoint(edited, ck)  # the same edit saved through save_checkpoint is deliberate, and loads
    assert E.load_checkpoint(edited)[1][key] == ck[key]


def test_content_digest_absent_or_naming_a_missing_entry(tutorial_run, tmp_path):
    ck = torch.load(tutorial_run[0] / "model.pt", weights_only=True)
    del ck["metrics"]
    torch.save(ck, tmp_path / "gone.pt")
    with pytest.raises(E.CheckpointError, match="metrics was saved but is missing"):
        E.load_checkpoint(tmp_path / "gone.pt")
    # a digest dropped with an edit: refused in a version-2 checkpoint, whole or for one entry
    ck["scaler"]["data_max"] = 300.0
    for drop in (lambda c: c["content_sha256"].pop("scaler"), lambda c: c.pop("content_sha256")):
        edited = {**ck, "content_sha256": dict(ck["content_sha256"])}
        drop(edited)
        torch.save(edited, tmp_path / "stripped.pt")
        with pytest.raises(E.CheckpointError, match="scaler has no digest|content_sha256 is missing"):
            E.load_checkpoint(tmp_path / "stripped.pt")
    del ck["content_sha256"]  # a version-1 checkpoint, written before content digests existed, loads (documented)
    ck["version"] = 1
    torch.save(ck, tmp_path / "old.pt")
    assert E.load_checkpoint(tmp_path / "old.pt")[1]["scaler"] == ck["scaler"]
    ck["content_sha256"] = ["not", "a", "dict"]
    torch.save(ck, tmp_path / "junk.pt")
    with pytest.raises(E.CheckpointError, match="content_sha256 is not a dict of digests by key"):
        E.load_checkpoint(tmp_path / "junk.pt")


@pytest.mark.parametrize("part, key, value, needle", [
    ("scaler", "data_max", 0.0, "scaler data_max 0.0 must be greater than data_min 0.0"),
    ("scaler", "data_max", float("nan"), "scaler data_max must be a finite number, got nan"),
    ("model_config", "return_sequences", True, "model_config return_sequences is True"),
    ("model_config", "dense_units", 2, "model_config dense_units is 2"),
    ("model_config", "input_shape", (24, 1), "model_config input_shape (24, 1) does not fit windows time_steps 12"),
    ("windows", "time_steps", 24, "does not fit windows time_steps 24"),
    ("windows", "scale_on", None, "windows has no scale_on"),
    ("windows", "stride", 0, "windows stride must be a positive integer, got 0"),
    ("model_config", "dense_units", None, "model_config dense_units is None"),
])
def test_edited_checkpoints_are_refused_naming_the_key(tutorial_run, tmp_path, capsys, part, key, value, needle):
    # Hand-edited checkpoints once gave nonsense numbers (a zero-range scaler) or tracebacks
    # (return_sequences=True, a missing scale_on); each is now an inconsistent checkpoint.
    ck = torch.load(tutorial_run[0] / "model.pt", weights_only=True)
    if value is None and key == "scale_on":
        del ck[part][key]
    else:
        ck[part][key] = value
    if part == "model_config" and key == "dense_units" and value is None:
        del ck["model_state"]["dense.weight"], ck["model_state"]["dense.bias"]
    edited = tmp_path / "edited.pt"
    E.save_checkpoint(edited, ck)  # valid digests: only the edit itself is wrong
    with pytest.raises(E.CheckpointError) as info:
        E.load_checkpoint(edited)
    assert f"checkpoint {edited}: inconsistent content" in str(info.value) and needle in str(info.value)
    _one_line_error(capsys, main(["predict", "--checkpoint", str(edited), "--quiet"]), str(edited), needle)


def test_bad_data_and_flags(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text('"Month","Sunspots"\n"1749-01",58.0\n"1749-02",?\n')
    _one_line_error(capsys, main(["train", "--data", str(data), "--out", str(tmp_path / "o")]), "row 2", "'?'")
    assert not (tmp_path / "o").exists(), "nothing written on a data error"
    t0 = time.perf_counter()
    _one_line_error(capsys, main(["train", "--data", "http://127.0.0.1:9/x.csv", "--quiet"]), "cannot read")
    assert time.perf_counter() - t0 < 10
    short = tmp_path / "short.csv"
    short.write_text("Month,Sunspots\n" + "".join(f"m{i},{i}\n" for i in range(30)))
    _one_line_error(capsys, main(["train", "--data", str(short), "--quiet", "--out", str(tmp_path / "s")]),
                    "test part", "no window")
    _one_line_error(capsys, main(["train", "--device", "cuda:0" if not torch.cuda.is_available() else "nonsense",
                                  "--quiet"]), "--device")
    _one_line_error(capsys, main(["train", "--activation", "nope", "tanh", "--epochs", "1", "--quiet",
                                  "--out", str(tmp_path / "a")]), "nope")
    for argv in (["train", "--epochs", "0"], ["train", "--lr", "-1"], ["train", "--split", "1.5"],
                 ["train", "--scale-on", "test"], ["train", "--hidden-units"], ["predict"], ["frobnicate"], []):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and "error" in err and "Traceback" not in err, argv


@pytest.mark.parametrize("device", ["meta", "xla", "ipu", "privateuseone", "hpu"])
def test_devices_without_data_or_support_are_usage_errors(tutorial_run, tmp_path, capsys, device):
    # meta holds no data, the rest need plug-ins: all used to end in tracebacks, and predict
    # --device meta blamed the checkpoint.
    _one_line_error(capsys, main(["train", "--quiet", "--epochs", "1", "--device", device,
                                  "--out", str(tmp_path / "r")]), f"--device {device}", "use --device cpu")
    assert not (tmp_path / "r").exists()
    lines = _one_line_error(capsys, main(["predict", "--checkpoint", str(tutorial_run[0] / "model.pt"),
                                          "--device", device, "--quiet"]), f"--device {device}")
    assert "checkpoint" not in lines[-1]


_CPU_ALLOCATOR = ("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: you "
                  "tried to allocate 80000000000 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("exc, amount", [
    (RuntimeError(_CPU_ALLOCATOR), "80 GB"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has ..."), "20.00 GiB"),
    (MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)"), "74.5 GiB"),
    (MemoryError(), None),
])
def test_out_of_memory_is_an_error_naming_the_sizes(tmp_path, capsys, monkeypatch, exc, amount):
    def train_run(*a, **k):
        raise exc
    monkeypatch.setattr(E, "train_run", train_run)
    out = tmp_path / "r"
    lines = _one_line_error(capsys, main(["train", "--quiet", "--hidden-units", "100000", "--out", str(out)]),
                            "out of memory", "--hidden-units 100000", "--time-steps 12", "--batch-size 1")
    if amount:
        assert f"an allocation of {amount} failed" in lines[-1]
    assert len(lines) == 1 and not out.exists()


def test_other_runtime_errors_still_surface(tmp_path, monkeypatch):
    def train_run(*a, **k):
        raise RuntimeError("a bug, not a user's mistake")
    monkeypatch.setattr(E, "train_run", train_run)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "--quiet", "--out", str(tmp_path / "r")])


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS caps allocations this way on Linux")
def test_hidden_units_beyond_memory_exit_2_without_traceback(tmp_path):
    # The real thing: an 80 GB orthogonal initialisation under an 8 GB address-space limit.
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (8 * 10**9, 8 * 10**9)); "
            "from torchrnn.cli import main; "
            f"sys.exit(main(['train', '--quiet', '--epochs', '1', '--hidden-units', '100000', '--out', {str(tmp_path / 'r')!r}]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert "out of memory (an allocation of 80 GB failed) with --hidden-units 100000" in res.stderr
    assert not (tmp_path / "r").exists()


def test_huge_values_give_finite_metrics_and_strict_json(tmp_path, capsys):
    data = tmp_path / "huge.csv"
    values = [float(i) for i in range(1, 101)]
    values[4] = 1e300  # in the training part: the scaler's range becomes ~1e300
    data.write_text("Month,Value\n" + "".join(f"m{i},{v!r}\n" for i, v in enumerate(values)))
    assert main(["train", "--data", str(data), "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("model", "persistence"))]
    assert len(rows) == 2 and all(len(r) == 5 for r in rows) and "inf" not in out, out  # 4 readable cells each

    def refuse(constant):
        raise AssertionError(f"metrics.json holds {constant}")
    m = json.loads((tmp_path / "r" / "metrics.json").read_text(), parse_constant=refuse)
    for part in ("train", "test"):
        row = m["rmse"][part]["model"]
        assert_close(row["original"], row["scaled"] * (1e300 - 1.0), atol=0.0, rtol=1e-12, name=f"{part} original")


def test_never_overwrites_a_run(tutorial_run, capsys):
    out, _ = tutorial_run
    before = {n: (out / n).read_bytes() for n in cli.OUTPUT_FILES}
    _one_line_error(capsys, _train(out), "refusing to overwrite")
    assert {n: (out / n).read_bytes() for n in cli.OUTPUT_FILES} == before


def _no_training(monkeypatch):
    def train_run(*a, **k):
        raise AssertionError("trained although --out is unusable")
    monkeypatch.setattr(E, "train_run", train_run)


def test_unusable_out_is_refused_before_training(tmp_path, capsys, monkeypatch):
    # Found only after the last epoch, an unusable --out used to lose the trained model.
    _no_training(monkeypatch)
    (tmp_path / "afile").write_text("a regular file")
    out = tmp_path / "afile" / "sub" / "deeper"
    _one_line_error(capsys, main(["train", "--quiet", "--out", str(out)]), f"--out {out}", "cannot create folder",
                    "Not a directory")
    if Path("/proc/self").is_dir():  # a folder that exists but takes no new files (Linux)
        _one_line_error(capsys, main(["train", "--quiet", "--out", "/proc/self"]), "--out /proc/self",
                        "cannot write files in this folder")
    if os.name == "posix" and os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _one_line_error(capsys, main(["train", "--quiet", "--out", str(ro / "run")]), f"--out {ro / 'run'}",
                        "Permission denied")


def test_folders_made_for_a_failed_run_are_removed_and_existing_ones_kept(tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(E, "train_run", interrupted)
    assert main(["train", "--quiet", "--out", str(tmp_path / "a" / "b" / "c")]) == 130
    assert not (tmp_path / "a").exists(), "the parents it created go too"
    (tmp_path / "mine").mkdir()
    assert main(["train", "--quiet", "--out", str(tmp_path / "mine")]) == 130
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


def test_default_out_is_a_new_folder_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.time, "strftime", lambda fmt: "20240101-000000")
    for _ in range(2):
        assert main(["train", "--epochs", "1", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["20240101-000000", "20240101-000000-1"]


def test_interrupt_during_training_exits_130_without_files(tmp_path, capsys, monkeypatch):
    import torchrnn.train as T

    calls = {"n": 0}

    def interrupting(real):
        def step(self, *args):
            calls["n"] += 1
            if calls["n"] == 100:
                raise KeyboardInterrupt
            return real(self, *args)
        return step

    # what fit calls: _step (with or without torch.optim's wrapper), _bound_step after a NumPy step
    for name in ("_step", "_bound_step"):
        monkeypatch.setattr(T.KerasAdam, name, interrupting(getattr(T.KerasAdam, name)))
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--out", str(out), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_sigterm_during_training_exits_143_and_leaves_no_folder(tmp_path):
    # `timeout` or `kill` once left an empty output folder behind (only Ctrl-C cleaned up)
    import signal
    import threading

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "torchrnn.cli", "train", "--epochs", "100000", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(120, proc.kill)  # never hang the suite: a killed run fails the asserts below
    guard.start()
    try:
        for line in proc.stderr:  # not a terminal: one line per epoch
            if line.startswith("Epoch 2/"):
                break
        assert out.is_dir(), "the folder is made before training"
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        guard.cancel()
        proc.kill()
    assert "torchrnn: terminated" in rest and "Traceback" not in rest
    assert not out.exists()


def test_interrupt_while_saving_leaves_no_half_checkpoint(tmp_path, capsys, monkeypatch):
    def torn_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(E.torch, "save", torn_save)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 130
    assert not out.exists() or list(out.iterdir()) == [], "neither model.pt nor a temporary file remains"


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def fail(f):
        f.write("new, but not finished")
        raise OSError("disk full")

    with pytest.raises(OSError):
        E.atomic_write(target, fail, mode="w")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    E.atomic_write(target, lambda f: f.write("new"), mode="w")
    assert target.read_text() == "new"


# --------------------------------------------------------------------------- help

def test_every_flag_has_help(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings}"
    assert main(["--help"]) == 0
    assert main(["train", "--help"]) == 0
    assert main(["predict", "--help"]) == 0
    words = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert "reproduces the tutorial exactly" in words and "--scale-on" in words
    assert words.count("[--threads N]") == 2 and "several times slower" in words  # why the default is 1
    assert words.count(f"At most {cli.MAX_THREADS} (max(64, 4 x CPUs))") == 2


_LIGHT_START = """
import contextlib, io, sys
from torchrnn.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    codes = [main(argv) for argv in ARGVS]
heavy = {"torch", "numpy", "sklearn", "scipy", "pandas", "matplotlib", "tqdm"}
print(codes, sorted({m.split(".")[0] for m in sys.modules} & heavy))
"""


def test_help_and_usage_errors_import_no_heavy_library():
    # torch alone takes about 1.5 s to import, scikit-learn a second: --help and a bad flag
    # must answer without either.
    argvs = [["--help"], ["train", "--help"], ["predict", "--help"], ["train", "--epochs", "0"],
             ["predict", "--checkpoint"], ["train", "--threads", "-1"]]
    code = f"ARGVS = {argvs!r}\n{_LIGHT_START}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[0, 0, 0, 2, 2, 2] []", out.stderr[-2000:]


def test_lazy_package_still_exports_everything():
    # torchrnn/__init__.py defers its imports (for the start-up above); every public name and
    # the submodules an eager import used to expose must still be reachable.
    import importlib

    import torchrnn

    assert set(torchrnn.__all__) == set(torchrnn._EXPORTS)
    for name in torchrnn.__all__:
        home = importlib.import_module(f"torchrnn.{torchrnn._EXPORTS[name]}")
        assert getattr(torchrnn, name) is getattr(home, name), name
        assert name in dir(torchrnn)
    assert torchrnn.metrics.rmse([1.0], [1.0]) == 0.0 and torchrnn.init.glorot_uniform
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        torchrnn.nope  # noqa: B018


def test_tutorial_defaults():
    args = cli.build_parser().parse_args(["train"])
    assert (args.time_steps, args.hidden_units, args.activation, args.epochs, args.batch_size, args.lr,
            args.split, args.stride, args.scale_on, args.seed, args.device, args.threads) == \
        (12, [3], ["tanh", "tanh"], 20, 1, 1e-3, 0.8, None, "train", 0, "cpu", 1)


def test_output_files_get_the_ordinary_mode(tmp_path):
    """Atomic writes go through mkstemp (0600); the files must end up 0666 minus the umask."""
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.pt", "metrics.json", "plot.png", "loss.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name


def test_predict_out_and_checkpoint_paths_are_checked(tutorial_run, tmp_path, capsys):
    run_dir = tutorial_run[0]
    ckpt = run_dir / "model.pt"
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--quiet"]) == 2
    assert f"{tmp_path} is a directory" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(tmp_path / "no" / "p.csv"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run_dir)]) == 2
    assert "is a directory; give the model.pt file inside it" in capsys.readouterr().err
    _one_line_error(capsys, main(["predict", "--checkpoint", ""]), "checkpoint path '' is empty")
    _one_line_error(capsys, main(["predict", "--checkpoint", os.devnull]), f"{os.devnull} is a character device")
    # an empty --out once wrote into the current folder (train) or named '' in an OSError (predict)
    for argv in (["predict", "--checkpoint", str(ckpt), "--out", ""], ["train", "--out", " ", "--epochs", "1"]):
        _one_line_error(capsys, main(argv), "--out", "is empty")
    # --out naming the checkpoint (or the data) read once replaced it with the CSV; a trailing
    # slash on a missing folder once wrote a file of that name
    copy = tmp_path / "copy.pt"
    copy.write_bytes(ckpt.read_bytes())
    _one_line_error(capsys, main(["predict", "--checkpoint", str(copy), "--out", str(copy)]),
                    f"--out {copy} is the --checkpoint file being read")
    assert copy.read_bytes() == ckpt.read_bytes()
    link = tmp_path / "link.pt"
    link.symlink_to(copy)
    _one_line_error(capsys, main(["predict", "--checkpoint", str(copy), "--out", str(link)]),
                    "is the --checkpoint file being read")
    data = tmp_path / "d.csv"
    data.write_bytes(EMBEDDED_CSV.read_bytes())
    _one_line_error(capsys, main(["predict", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(data)]),
                    "is the --data file being read")
    _one_line_error(capsys, main(["predict", "--checkpoint", str(ckpt), "--out", str(tmp_path / "newdir") + "/"]),
                    "names a folder")
    assert not (tmp_path / "newdir").exists()
    # --out is checked before the checkpoint is read: a bad --out with a bad checkpoint names --out
    _one_line_error(capsys, main(["predict", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path)]),
                    f"--out: {tmp_path} is a directory")


def test_predict_out_in_a_folder_it_cannot_write_names_out(tutorial_run, tmp_path, capsys, monkeypatch):
    ckpt = tutorial_run[0] / "model.pt"
    ro = tmp_path / "ro"
    ro.mkdir()
    target = ro / "p.csv"
    if os.geteuid() != 0:
        ro.chmod(0o555)
    else:  # root writes in a 0555 folder; make the folder refuse new files as a read-only one would
        import tempfile
        real = tempfile.mkstemp

        def refuse(*a, dir=None, **k):
            if dir is not None and Path(dir) == ro:
                raise PermissionError(13, "Permission denied", os.path.join(dir, ".random-temp-name"))
            return real(*a, dir=dir, **k)
        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        lines = _one_line_error(capsys, main(["predict", "--checkpoint", str(ckpt), "--out", str(target)]),
                                f"--out {target}: cannot write files in folder {ro}", "Permission denied")
        assert ".tmp" not in lines[-1] and "random-temp-name" not in lines[-1] and not target.exists()
    finally:
        ro.chmod(0o755)


def test_predict_out_never_replaces_a_device_or_pipe_and_writes_through_a_link(tutorial_run, tmp_path, capsys):
    # predict --out /dev/full once replaced the device with the CSV (atomic_write's os.replace)
    ckpt = tutorial_run[0] / "model.pt"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _one_line_error(capsys, main(["predict", "--checkpoint", str(ckpt), "--out", str(fifo), "--quiet"]),
                    f"{fifo} is a named pipe")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    null = Path(os.devnull)
    before = null.stat()
    _one_line_error(capsys, main(["predict", "--checkpoint", str(ckpt), "--out", os.devnull, "--quiet"]),
                    f"{os.devnull} is a character device")
    assert stat.S_ISCHR(null.stat().st_mode) and null.stat().st_rdev == before.st_rdev
    target, link = tmp_path / "target.csv", tmp_path / "link.csv"
    target.write_text("old\n")
    link.symlink_to(target.name)
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(link), "--quiet"]) == 0
    assert link.is_symlink() and target.read_text().startswith("part,window,target_index")
    long_name = tmp_path / ("a" * 300)
    for argv in (["predict", "--checkpoint", str(ckpt), "--out", str(long_name)], ["train", "--out", str(long_name)]):
        _one_line_error(capsys, main(argv), "--out", "File name too long")


def test_a_non_finite_weight_is_refused_naming_the_tensor(tutorial_run, tmp_path, capsys):
    ck = torch.load(tutorial_run[0] / "model.pt", weights_only=True)
    ck["model_state"]["dense.weight"][0, 2] = float("nan")
    nan_ckpt = tmp_path / "nan.pt"
    E.save_checkpoint(nan_ckpt, ck)  # valid digests: the NaN was saved on purpose (or trained in)
    with pytest.raises(E.CheckpointError,
                       match=r"tensor dense.weight holds 1 non-finite value \(first nan at index \(0, 2\)\)"):
        E.load_checkpoint(nan_ckpt)
    _one_line_error(capsys, main(["predict", "--checkpoint", str(nan_ckpt), "--quiet"]), "dense.weight")


def test_a_write_failing_midway_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "p.csv"

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=rf"cannot write {target}: No space left on device"):
        E.atomic_write(target, lambda f: f.write("x"), mode="w")
    assert list(tmp_path.iterdir()) == [], "no temporary file left behind"
