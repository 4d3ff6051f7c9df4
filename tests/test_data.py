"""torchrnn.data: the embedded series, loading (handed case K7), split, scaling, windows (K6).

Offline: URLs point at 127.0.0.1 only (a closed port, or an http.server thread).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import MinMaxScaler

from torchrnn import data as D

EMBEDDED_SHA256 = "111a8145b95fe7879ceb36e0782c742f5b4be4015c7c914848218aa40307d8e5"
# The tutorial's own download, present in the workplace beside the repository only.
SHARED_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "monthly-sunspots.csv"

# K7: three data rows in the tutorial's format (quoted, CRLF, no final newline).
K7_HEADER = '"Month","Sunspots"'
K7_ROWS = ['"1749-01",58.0', '"1749-02",62.6', '"1749-03",70.0']
K7_VALUES = [58.0, 62.6, 70.0]


def write(tmp_path: Path, text: str, name: str = "series.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def k7(rows=K7_ROWS, tail: str = "") -> str:
    return "\r\n".join([K7_HEADER, *rows]) + tail


def embedded_path() -> Path:
    return Path(str(resources.files("torchrnn").joinpath("data", "monthly-sunspots.csv")))


# --------------------------------------------------------------------------- embedded file

def test_embedded_file_checksum():
    raw = resources.files("torchrnn").joinpath("data", "monthly-sunspots.csv").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == EMBEDDED_SHA256
    assert raw.startswith(b"Month,Sunspots\n1749-01,58.0\n")
    assert raw.endswith(b"\n1983-12,33.4\n")


def test_embedded_summary_figures():
    v = D.load_series()
    assert v.dtype == np.float64 and v.shape == (2820,)
    assert v[0] == 58.0 and v[1] == 62.6 and v[-1] == 33.4
    assert v.min() == 0.0 and np.count_nonzero(v == 0.0) == 67
    assert v.max() == 253.8 and int(v.argmax()) == 2505  # 1957-10, in the test part (from 2256)
    assert v.sum() == pytest.approx(144570.0, abs=1e-9)
    assert v.mean() == pytest.approx(51.265957446808514, rel=1e-12)


def test_embedded_months_are_consecutive():
    months = pd.read_csv(embedded_path(), usecols=[0]).iloc[:, 0].tolist()
    expected = [f"{y}-{m:02d}" for y in range(1749, 1984) for m in range(1, 13)]
    assert months == expected


def test_embedded_read_like_the_tutorial():
    # The tutorial's own call on our file gives exactly what load_series gives.
    tutorial = pd.read_csv(embedded_path(), usecols=[1], engine="python").values.ravel()
    np.testing.assert_array_equal(D.load_series(), tutorial)


def test_embedded_provenance():
    s = D.read_series()
    assert s.provenance() == {"source": D.EMBEDDED_SOURCE, "sha256": EMBEDDED_SHA256,
                              "column": "Sunspots", "n_values": 2820}


def test_embedded_matches_the_tutorial_download():
    if not SHARED_CSV.exists():
        pytest.skip(f"the tutorial's download is not beside the repository ({SHARED_CSV})")
    raw = SHARED_CSV.read_bytes()
    assert raw.startswith(b'"Month","Sunspots"\r\n') and not raw.endswith(b"\n")
    shared = D.load_series(SHARED_CSV)
    assert shared.shape == (2820,)
    np.testing.assert_array_equal(shared, D.load_series())
    np.testing.assert_array_equal(pd.read_csv(SHARED_CSV, usecols=[1]).values.ravel(), shared)


# --------------------------------------------------------------------------- K7 CSV input

def test_k7_crlf_no_final_newline(tmp_path):
    text = k7()
    assert "\r\n" in text and not text.endswith("\n")
    assert D.load_series(write(tmp_path, text)).tolist() == K7_VALUES


def test_k7_trailing_blank_lines(tmp_path):
    assert D.load_series(write(tmp_path, k7(tail="\r\n\r\n\r\n\r\n"))).tolist() == K7_VALUES
    assert D.load_series(write(tmp_path, k7(tail="\n\n  \n"))).tolist() == K7_VALUES


def test_lf_and_unquoted(tmp_path):
    text = "Month,Sunspots\n1749-01,58.0\n1749-02,62.6\n1749-03,70.0\n"
    assert D.load_series(write(tmp_path, text)).tolist() == K7_VALUES


def test_k7_trailing_text_line_names_line_and_text(tmp_path):
    path = write(tmp_path, k7(tail="\r\nZuerich monthly sunspot numbers 1749-1983\r\n"))
    with pytest.raises(D.DataError) as err:
        D.load_series(path)
    msg = str(err.value)
    assert msg == (f"{path}: line 5 (data row 4): expected 2 fields like the header, "
                   f"found 1: 'Zuerich monthly sunspot numbers 1749-1983'")


@pytest.mark.parametrize("bad, says", [
    ("", "empty value"),
    ("NaN", "missing value 'NaN'"),
    ("nan", "missing value 'nan'"),
    ("NA", "missing value 'NA'"),
    ("?", "not a number: '?'"),
    ("1_000", "not a number: '1_000'"),
    ("inf", "not a number: 'inf'"),
    ("1e999", "value out of range: '1e999'"),
])
def test_k7_bad_value_in_row_2_names_the_row(tmp_path, bad, says):
    rows = [K7_ROWS[0], f'"1749-02",{bad}', K7_ROWS[2]]
    path = write(tmp_path, k7(rows))
    with pytest.raises(D.DataError) as err:
        D.load_series(path)
    assert str(err.value).startswith(f"{path}: data row 2 (line 3), column 'Sunspots': {says}")


def test_k7_question_mark_message_in_full(tmp_path):
    path = write(tmp_path, k7([K7_ROWS[0], '"1749-02",?', K7_ROWS[2]]))
    with pytest.raises(D.DataError, match=r"data row 2 \(line 3\), column 'Sunspots': not a number: '\?'$"):
        D.load_series(path)


def test_row_and_line_numbers_differ_after_a_blank_line(tmp_path):
    path = write(tmp_path, "Month,Sunspots\n\n1749-01,58.0\n1749-02,?\n")
    with pytest.raises(D.DataError, match=r"data row 2 \(line 4\)"):
        D.load_series(path)


def test_blank_line_between_data_rows_is_refused_naming_it(tmp_path):
    """A blank line inside the data may be a lost month: skipping it would move every later value
    one step early. Before the header and after the last row, blank lines are harmless."""
    path = write(tmp_path, "Month,Sunspots\n1749-01,58.0\n1749-02,62.6\n\n  \n1749-03,70.0\n")
    with pytest.raises(D.DataError) as err:
        D.load_series(path)
    assert str(err.value) == (f"{path}: line 4 is blank, between data rows 2 and 3; blank lines are "
                              f"accepted only before the header and after the last row")
    assert D.load_series(write(tmp_path, "\n\nMonth,Sunspots\n1749-01,58.0\n1749-02,62.6\n1749-03,70.0\n\n\n"
                               )).tolist() == K7_VALUES


@pytest.mark.parametrize("text", [K7_HEADER, K7_HEADER + "\r\n", K7_HEADER + "\r\n\r\n\r\n"])
def test_k7_header_only_is_no_data(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(D.DataError) as err:
        D.load_series(path)
    assert str(err.value) == f"{path}: no data: only a header line ('Month,Sunspots'), no data rows"


def test_empty_file_is_no_data(tmp_path):
    with pytest.raises(D.DataError, match="no data: the file is empty"):
        D.load_series(write(tmp_path, "\r\n\r\n"))


def test_fewer_than_two_columns(tmp_path):
    path = write(tmp_path, "Sunspots\n58.0\n62.6\n")
    with pytest.raises(D.DataError) as err:
        D.load_series(path)
    assert str(err.value) == (f"{path}: the header has 1 field ('Sunspots'), so there is no column 1 "
                              f"(0-based); expected at least 2 columns such as 'Month,Sunspots'")


def test_headerless_file_is_refused_not_shortened(tmp_path):
    # pandas would take the first data row as the header and lose the first value.
    with pytest.raises(D.DataError, match=r"line 1 looks like data, not a header: '1749-01,58.0'"):
        D.load_series(write(tmp_path, "1749-01,58.0\n1749-02,62.6\n"))


def test_extra_field_in_a_row(tmp_path):
    with pytest.raises(D.DataError, match=r"line 3 \(data row 2\): expected 2 fields like the header, found 3"):
        D.load_series(write(tmp_path, "Month,Sunspots\n1749-01,58.0\n1749-02,62.6,x\n"))


def test_column_by_name_and_index(tmp_path):
    path = write(tmp_path, "Month,Sunspots,Smoothed\n1749-01,58.0,1.5\n1749-02,62.6,2.5\n")
    assert D.load_series(path).tolist() == [58.0, 62.6]
    assert D.load_series(path, column=2).tolist() == [1.5, 2.5]
    s = D.read_series(path, column="Smoothed")
    assert s.values.tolist() == [1.5, 2.5] and s.column == "Smoothed"
    with pytest.raises(D.DataError, match=r"no column 'Nope' in the header; columns are \['Month', 'Sunspots', 'Smoothed'\]"):
        D.load_series(path, column="Nope")
    with pytest.raises(ValueError, match="column must be a header name or a non-negative index, got -1"):
        D.load_series(path, column=-1)


# --------------------------------------------------------------------------- month labels

def embedded_rows() -> list[str]:
    """The embedded file's data rows ('1749-01,58.0', ...); data row r is rows[r - 1], line r + 1."""
    return embedded_path().read_text().splitlines()[1:]


def month_csv(rows: list[str], quoted: bool) -> str:
    """Rows as the embedded file writes them (LF), or as the tutorial's download (quoted, CRLF, no final newline)."""
    if not quoted:
        return "\n".join(["Month,Sunspots", *rows]) + "\n"
    return "\r\n".join([K7_HEADER, *(f'"{r.split(",")[0]}",{r.split(",")[1]}' for r in rows)])


def refused(tmp_path, text: str) -> tuple[Path, str]:
    path = write(tmp_path, text)
    with pytest.raises(D.DataError) as err:
        D.load_series(path)
    return path, str(err.value)


RULE = "the months must be consecutive, one row per month, in increasing order"


def test_embedded_rows_are_what_the_month_tests_edit():
    rows = embedded_rows()
    assert len(rows) == 2820 and rows[12] == "1750-01,73.3" and rows[13].startswith("1750-02,")


@pytest.mark.parametrize("quoted", [False, True], ids=["unquoted-LF", "quoted-CRLF"])
def test_consecutive_months_load_quoted_or_not(tmp_path, quoted):
    v = D.load_series(write(tmp_path, month_csv(embedded_rows(), quoted)))
    np.testing.assert_array_equal(v, D.load_series())
    assert v.shape == (2820,)


def _duplicate_1750_01(rows):
    rows.insert(13, rows[12])  # 1750-01 (data row 13) twice: the copy is data row 14, line 15


def _delete_1750_02(rows):
    del rows[13]  # 1750-02 lost: 1750-03 becomes data row 14, line 15


def _swap_1750_02_03(rows):
    rows[13], rows[14] = rows[14], rows[13]  # data rows 14, 15: 1750-03 then 1750-02


def _month_13(rows):
    assert rows[24].startswith("1751-01,")
    rows[24] = "1750-13," + rows[24].split(",")[1]  # data row 25, line 26, after 1750-12


@pytest.mark.parametrize("quoted", [False, True], ids=["unquoted-LF", "quoted-CRLF"])
@pytest.mark.parametrize("edit, message", [
    (_duplicate_1750_01, f"data row 14 (line 15), column 'Month': month 1750-01 repeats "
                         f"(the row before is also 1750-01); {RULE}"),
    (_delete_1750_02, f"data row 14 (line 15), column 'Month': month 1750-03 follows 1750-01: "
                      f"1 month missing; {RULE}"),
    (_swap_1750_02_03, f"data row 15 (line 16), column 'Month': month 1750-02 comes after 1750-03 "
                       f"(out of order); {RULE}"),
    (_month_13, "data row 25 (line 26), column 'Month': month 1750-13 follows 1750-12: "
                "there is no month 13; months are 01 to 12"),
], ids=["duplicated", "deleted", "swapped", "month-13"])
def test_an_edited_month_column_is_refused_naming_row_and_months(tmp_path, quoted, edit, message):
    rows = embedded_rows()
    edit(rows)
    path, msg = refused(tmp_path, month_csv(rows, quoted))
    assert msg == f"{path}: {message}"


def test_month_00_in_the_first_row_and_gap_over_a_year_end(tmp_path):
    path, msg = refused(tmp_path, "Month,Sunspots\n1749-00,1\n1749-01,2\n")
    assert msg == (f"{path}: data row 1 (line 2), column 'Month': month 1749-00: "
                   f"there is no month 00; months are 01 to 12")
    path, msg = refused(tmp_path, "Month,Sunspots\n1749-11,1\n1750-02,2\n")
    assert msg == (f"{path}: data row 2 (line 3), column 'Month': month 1750-02 follows 1749-11: "
                   f"2 months missing; {RULE}")


def test_month_message_counts_lines_like_the_other_messages(tmp_path):
    # Two blank lines before the header: data row r is then line r + 3, as in the value messages.
    path, msg = refused(tmp_path, "\n\nMonth,Sunspots\n1749-01,58.0\n1749-02,62.6\n1749-02,70.0\n")
    assert msg.startswith(f"{path}: data row 3 (line 6), column 'Month': month 1749-02 repeats")


def test_only_year_month_labels_are_checked(tmp_path):
    # Days (even repeated or backwards), plain numbers, names, and a column that is not all
    # YYYY-MM load as before: the check applies only to a column of year-months.
    for text in ["Date,Value\n1749-01-15,1\n1749-01-15,2\n1749-01-01,3\n",
                 "Step,Value\n3,1\n1,2\n1,3\n",
                 "Month,Value\nm0,1\nm0,2\n",
                 "Month,Value\n1749-01,1\n1749-03,2\nlater,3\n",
                 "Month,Value\n1749-01,1\n1749-3,2\n"]:
        assert D.load_series(write(tmp_path, text)).tolist() == [1.0, 2.0, 3.0][:text.count("\n") - 1]
    # one-column mode: the first column is the values column itself
    assert D.load_series(write(tmp_path, "Sunspots\n58.0\n58.0\n"), column=0).tolist() == [58.0, 58.0]
    # another column of a year-month file is still read after its month labels are checked
    path = write(tmp_path, "Month,A,B\n1749-01,1,10\n1749-02,2,20\n")
    assert D.load_series(path, column="B").tolist() == [10.0, 20.0]
    with pytest.raises(D.DataError, match=r"data row 2 \(line 3\), column 'Month': month 1749-01 repeats"):
        D.load_series(write(tmp_path, "Month,A,B\n1749-01,1,10\n1749-01,2,20\n"), column=2)


def test_month_check_finds_the_last_of_16000_rows():
    # (its speed, ~3 ms for these 16,000 labels, is a benchmark's business, not a timed test's)
    labels = [f"{1000 + i // 12}-{i % 12 + 1:02d}" for i in range(16000)]
    lines = list(range(2, 16002))
    D._check_months(labels, lines, "x", "Month")
    with pytest.raises(D.DataError, match=r"^x: data row 16000 \(line 16001\), column 'Month': month 2333-03 repeats"):
        D._check_months(labels[:-1] + [labels[-2]], lines, "x", "Month")


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfMonth,Sunspots\r\n1749-01,58.0\r\n")
    assert D.load_series(path).tolist() == [58.0]


def test_path_provenance(tmp_path):
    path = write(tmp_path, k7())
    s = D.read_series(str(path))
    assert s.source == str(path.resolve())
    assert s.sha256 == hashlib.sha256(k7().encode()).hexdigest()


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(D.DataError) as err:
        D.load_series(missing)
    assert str(err.value) == f"cannot read {missing}: No such file or directory"
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_unsupported_url_scheme():
    with pytest.raises(D.DataError, match=r"^ftp://example\.org/x\.csv: unsupported URL scheme"):
        D.load_series("ftp://example.org/x.csv")


# --------------------------------------------------------------------------- URLs (local only)

@pytest.fixture
def no_proxy(monkeypatch):
    # A proxy set in the environment must not see our 127.0.0.1 requests.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def http_dir(tmp_path, no_proxy):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_k7_unreachable_url_fails_fast_with_one_line(no_proxy):
    url = "http://127.0.0.1:9/x.csv"
    start = time.monotonic()
    with pytest.raises(D.DataError) as err:
        D.load_series(url)
    assert time.monotonic() - start < 5.0
    msg = str(err.value)
    assert msg.startswith(f"cannot read {url}: ") and "refused" in msg.lower()
    assert "\n" not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_url_served_locally(http_dir):
    root, base = http_dir
    write(root, k7())
    s = D.read_series(f"{base}/series.csv")
    assert s.values.tolist() == K7_VALUES
    assert s.source == f"{base}/series.csv"
    assert s.sha256 == hashlib.sha256(k7().encode()).hexdigest()


def test_url_embedded_file_served_locally(http_dir):
    root, base = http_dir
    (root / "monthly-sunspots.csv").write_bytes(embedded_path().read_bytes())
    s = D.read_series(f"{base}/monthly-sunspots.csv")
    assert s.sha256 == EMBEDDED_SHA256
    np.testing.assert_array_equal(s.values, D.load_series())


def test_url_not_found(http_dir):
    _, base = http_dir
    with pytest.raises(D.DataError, match=rf"^cannot read {base}/absent\.csv: HTTP 404 "):
        D.load_series(f"{base}/absent.csv")


def test_url_silent_server_times_out(no_proxy, monkeypatch):
    # A server that accepts the connection and never answers: the timeout must fire.
    monkeypatch.setattr(D, "URL_TIMEOUT", 0.5)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/x.csv"
        start = time.monotonic()
        with pytest.raises(D.DataError) as err:
            D.load_series(url)
        elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 3.0
    assert str(err.value) == f"cannot read {url}: no answer within 0.5 s (timed out)"


# --------------------------------------------------------------------------- split

def test_split_sunspots_80_20_in_time_order():
    v = D.load_series()
    train, test = D.train_test_split(v)
    assert (train.size, test.size) == (2256, 564)
    assert train[-1] == v[2255] and test[0] == v[2256]
    np.testing.assert_array_equal(np.concatenate([train, test]), v)
    assert train.max() == 238.9 and test.max() == 253.8  # the series maximum is in the test part


def test_split_point_is_int_of_n_times_fraction():
    a = np.arange(10.0)
    assert [t.size for t in D.train_test_split(a, 0.75)] == [7, 3]
    assert [t.size for t in D.train_test_split(np.arange(2.0), 0.8)] == [1, 1]


@pytest.mark.parametrize("fraction", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.8"])
def test_split_fraction_must_be_inside_0_1(fraction):
    with pytest.raises(ValueError, match="train_fraction must be a number strictly between 0 and 1"):
        D.train_test_split(np.arange(10.0), fraction)


def test_split_refuses_an_empty_part():
    with pytest.raises(ValueError, match=r"splits 3 values into 0 train / 3 test"):
        D.train_test_split(np.arange(3.0), 0.2)


# --------------------------------------------------------------------------- scaling

def test_scaler_default_fits_on_train_only():
    v = D.load_series()
    train, test = D.train_test_split(v)
    sc = D.fit_scaler(train)
    assert sc.data_min_[0] == 0.0 and sc.data_max_[0] == 238.9
    # the whole series may be passed along; with the default it must not be looked at
    assert D.fit_scaler(train, v).data_max_[0] == 238.9
    assert D.scale(sc, train).max() == pytest.approx(1.0, abs=1e-15)  # x * scale_ + min_ rounds
    assert D.scale(sc, test).max() == pytest.approx(1.0623691921305984, rel=1e-14)  # 253.8 / 238.9


def test_scaler_all_reproduces_the_tutorial_exactly():
    v = D.load_series()
    train, test = D.train_test_split(v)
    tutorial = MinMaxScaler().fit_transform(v.reshape(-1, 1)).flatten()
    sc = D.fit_scaler(train, v, scale_on="all")
    assert sc.data_max_[0] == 253.8
    np.testing.assert_array_equal(np.concatenate([D.scale(sc, train), D.scale(sc, test)]), tutorial)


def test_scale_keeps_shape_and_unscale_inverts():
    sc = D.fit_scaler(np.array([10.0, 20.0, 30.0]))
    assert D.scale(sc, np.array([10.0, 25.0])).tolist() == [0.0, 0.75]
    pred = np.array([[0.0], [0.5], [1.0]])
    out = D.unscale(sc, pred)
    assert out.shape == (3, 1) and out.ravel().tolist() == [10.0, 20.0, 30.0]
    X = np.array([[[10.0], [30.0]]])
    assert D.scale(sc, X).shape == (1, 2, 1) and D.scale(sc, X).ravel().tolist() == [0.0, 1.0]


def test_scale_refuses_non_finite():
    sc = D.fit_scaler(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="scale: input holds 1 non-finite value$"):
        D.scale(sc, np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match=r"train holds 1 non-finite value \(first at index 1\)"):
        D.fit_scaler(np.array([0.0, np.nan, 1.0]))


def test_fit_scaler_argument_checks():
    train = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="scale_on='all' needs the whole series as `full`"):
        D.fit_scaler(train, scale_on="all")
    with pytest.raises(ValueError, match="`full` must be the whole series and begin with the `train` part"):
        D.fit_scaler(train, np.array([5.0, 6.0, 7.0]), scale_on="all")
    with pytest.raises(ValueError, match="scale_on must be 'train' or 'all', got 'test'"):
        D.fit_scaler(train, scale_on="test")


def test_scaler_dict_round_trip_is_bit_identical():
    v = D.load_series()
    sc = D.fit_scaler(D.train_test_split(v)[0])
    d = D.scaler_to_dict(sc)
    assert d == {"data_min": 0.0, "data_max": 238.9, "feature_range": [0.0, 1.0]}
    back = D.scaler_from_dict(d)
    np.testing.assert_array_equal(D.scale(back, v), D.scale(sc, v))
    np.testing.assert_array_equal(D.unscale(back, D.scale(sc, v)), D.unscale(sc, D.scale(sc, v)))


@pytest.mark.parametrize("edit, needle", [
    ({"data_max": 0.0}, "data_max 0.0 must be greater than data_min 0.0"),
    ({"data_max": -1.0}, "data_max -1.0 must be greater than data_min 0.0"),
    ({"data_max": float("nan")}, "data_max must be a finite number, got nan"),
    ({"data_min": float("-inf")}, "data_min must be a finite number, got -inf"),
    ({"data_min": "0"}, "data_min must be a finite number, got '0'"),
    ({"data_min": -1.5e308, "data_max": 1.5e308}, "by a finite amount"),
    ({"feature_range": [1.0, 0.0]}, "feature_range (1.0, 0.0) must be increasing"),
    ({"feature_range": [0.0]}, "feature_range must be a pair (min, max), got [0.0]"),
    ({"feature_range": [0.0, float("nan")]}, "feature_range[1] must be a finite number, got nan"),
])
def test_scaler_from_dict_refuses_what_fit_scaler_would_not_fit(edit, needle):
    # A hand-edited checkpoint: MinMaxScaler would take a zero range as 1 and skip a NaN, and
    # every "scaled" number would silently be the original one.
    d = {"data_min": 0.0, "data_max": 238.9, "feature_range": [0.0, 1.0], **edit}
    with pytest.raises(ValueError) as info:
        D.scaler_from_dict(d)
    assert "scaler" in str(info.value) and needle in str(info.value)


def test_scaler_from_dict_names_a_missing_key():
    with pytest.raises(ValueError, match=r"scaler has no data_max \(keys: \['data_min', 'feature_range'\]\)"):
        D.scaler_from_dict({"data_min": 0.0, "feature_range": [0.0, 1.0]})


def test_sklearn_is_imported_only_when_a_scaler_is_built():
    # scikit-learn (with scipy and pandas under it) takes about a second to import; reading,
    # splitting and windowing must not pay for it.
    code = ("import sys; from torchrnn import data as D; v = D.load_series(); tr, te = D.train_test_split(v); "
            "D.make_windows(tr, 12); before = 'sklearn' in sys.modules; D.fit_scaler(tr); "
            "print(before, 'sklearn' in sys.modules, type(D.fit_scaler(tr)).__module__.split('.')[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "sklearn"], out.stderr[-2000:]


# --------------------------------------------------------------------------- K6 windows

def tutorial_get_XY(dat, time_steps):
    """The tutorial's get_XY, verbatim apart from the name."""
    Y_ind = np.arange(time_steps, len(dat), time_steps)
    Y = dat[Y_ind]
    rows_x = len(Y)
    X = dat[range(time_steps * rows_x)]
    X = np.reshape(X, (rows_x, time_steps, 1))
    return X, Y


def test_k6_sunspots_window_counts_and_chaining():
    train, test = D.train_test_split(D.load_series())
    Xtr, ytr = D.make_windows(train, 12)
    Xte, yte = D.make_windows(test, 12)
    assert Xtr.shape == (187, 12, 1) and ytr.shape == (187, 1)
    assert Xte.shape == (46, 12, 1) and yte.shape == (46, 1)
    assert Xtr.dtype == ytr.dtype == np.float64
    # non-overlapping: the target of window i is the first input of window i + 1
    np.testing.assert_array_equal(ytr[:-1, 0], Xtr[1:, 0, 0])
    np.testing.assert_array_equal(yte[:-1, 0], Xte[1:, 0, 0])
    assert ytr[0, 0] == train[12] and ytr[-1, 0] == train[187 * 12]


def test_k6_16230_points_24_steps():
    a = np.arange(16230.0)
    assert D.make_windows(a, 24)[1].shape == (676, 1)  # not 680
    assert D.make_windows(a, 24, stride=1)[1].shape == (16206, 1)


def test_windows_golden_small():
    X, y = D.make_windows(np.arange(10.0), 3)
    assert X[:, :, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and y.tolist() == [[3], [6], [9]]
    X, y = D.make_windows(np.arange(9.0), 3)  # target 9 does not exist: 2 windows
    assert X[:, :, 0].tolist() == [[0, 1, 2], [3, 4, 5]] and y.tolist() == [[3], [6]]
    X, y = D.make_windows(np.arange(6.0), 3, stride=2)
    assert X[:, :, 0].tolist() == [[0, 1, 2], [2, 3, 4]] and y.tolist() == [[3], [5]]


@pytest.mark.parametrize("n, steps", [(12, 12), (5, 12), (1, 1)])
def test_k6_too_short_is_an_error(n, steps):
    with pytest.raises(ValueError) as err:
        D.make_windows(np.arange(float(n)), steps)
    assert str(err.value) == (f"a series of length {n} gives no window with time_steps={steps}: "
                              f"it needs at least {steps + 1} values ({steps} inputs and 1 target)")


@pytest.mark.parametrize("kwargs, says", [
    ({"time_steps": 0}, "time_steps must be a positive integer, got 0"),
    ({"time_steps": 2.0}, "time_steps must be a positive integer, got 2.0"),
    ({"time_steps": True}, "time_steps must be a positive integer, got True"),
    ({"time_steps": 2, "stride": 0}, "stride must be a positive integer, got 0"),
])
def test_window_argument_checks(kwargs, says):
    with pytest.raises(ValueError, match=f"^{says}$"):
        D.make_windows(np.arange(10.0), **kwargs)


def test_windows_need_a_1d_series():
    with pytest.raises(ValueError, match=r"values must be a 1-D series, got shape \(10, 1\)"):
        D.make_windows(np.arange(10.0).reshape(10, 1), 3)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(2, 400), steps=st.integers(1, 50))
def test_windows_match_the_tutorial_get_XY(n, steps):
    if n <= steps:
        with pytest.raises(ValueError):
            D.make_windows(np.arange(float(n)), steps)
        return
    dat = np.random.default_rng(n * 1000 + steps).normal(size=n)
    X_ref, Y_ref = tutorial_get_XY(dat, steps)
    X, y = D.make_windows(dat, steps)
    assert X.shape == X_ref.shape and y.shape == (len(Y_ref), 1)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y[:, 0], Y_ref)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 200), steps=st.integers(1, 30), stride=st.integers(1, 40))
def test_windows_with_stride_match_a_plain_loop(n, steps, stride):
    dat = np.arange(float(n)) * 1.5
    if n <= steps:
        return
    X_ref = [dat[s:s + steps] for s in range(0, n - steps, stride)]
    y_ref = [dat[s + steps] for s in range(0, n - steps, stride)]
    X, y = D.make_windows(dat, steps, stride=stride)
    assert X.shape == (len(X_ref), steps, 1)
    np.testing.assert_array_equal(X[:, :, 0], np.array(X_ref))
    np.testing.assert_array_equal(y[:, 0], np.array(y_ref))


# --------------------------------------------------------------------------- persistence baseline

def test_persistence_forecast_is_the_last_input():
    X, y = D.make_windows(np.arange(10.0), 3)
    p = D.persistence_forecast(X)
    assert p.shape == y.shape and p.tolist() == [[2], [5], [8]]


def test_persistence_rmse_on_sunspots():
    train, test = D.train_test_split(D.load_series())
    rmse = []
    for part in (train, test):
        X, y = D.make_windows(part, 12)
        rmse.append(float(np.sqrt(np.mean((D.persistence_forecast(X) - y) ** 2))))
    assert rmse == pytest.approx([15.962420775225404, 20.199278936764486], rel=1e-12)


def test_persistence_needs_3d():
    with pytest.raises(ValueError, match=r"X must have shape \(N, time_steps, features\), got \(3, 4\)"):
        D.persistence_forecast(np.zeros((3, 4)))


def test_constant_training_part_cannot_be_scaled():
    from torchrnn.data import DataError, fit_scaler

    with pytest.raises(DataError, match=r"the training part is constant \(5 values all equal to 3.0\)"):
        fit_scaler(np.full(5, 3.0))
