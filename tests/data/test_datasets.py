"""Finding, downloading (against a local HTTP server on 127.0.0.1) and falling back to the shipped sample."""
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from nbconv.data import datasets
from nbconv.data.idx import read_idx, write_idx


def make_tiny_mnist(directory, n_train=64, n_test=32, seed=0):
    """Write four small MNIST-format IDX files (gzip) whose images encode their labels."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    files = datasets.DATASETS["mnist"].files
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for k, label in enumerate(labels):
            images[k, 2 * label:2 * label + 6, 4:24] = 255
        write_idx(os.path.join(directory, files[f"{split}_images"]), images)
        write_idx(os.path.join(directory, files[f"{split}_labels"]), labels)
    return directory


class _Server:
    """Serves files from a dict {name: bytes}; `truncate` names files whose body is cut off mid-way."""

    def __init__(self, files, truncate=()):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append(name)
                if name not in files:
                    self.send_error(404)
                    return
                body = files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if name in truncate else body)

            def log_message(self, *args):
                pass

        self.requests = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mnist/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No NBCONV_DATA_DIR, an empty per-user cache, and an empty directory `data`."""
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    monkeypatch.delenv(datasets.ENV_MIRRORS, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()  # a --data-dir must exist: nbconv does not create it
    return tmp_path


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Tiny MNIST files, their bytes, and the md5 table patched to accept them."""
    source = make_tiny_mnist(str(tmp_path / "source"))
    info = datasets.DATASETS["mnist"]
    payloads = {name: open(os.path.join(source, name), "rb").read() for name in info.files.values()}
    md5s = {part: {hashlib.md5(payloads[name]).hexdigest()} for part, name in info.files.items()}
    monkeypatch.setitem(datasets.DATASETS, "mnist", datasets.DatasetInfo("mnist", info.files, md5s, info.mirrors))
    return payloads


def _quiet(*args, **kwargs):
    pass


def test_files_found_in_data_dir_or_dataset_subdirectory(isolated, monkeypatch):
    make_tiny_mnist(str(isolated / "root" / "mnist"))
    splits = datasets.load("mnist", data_dir=str(isolated / "root"), download_missing=False, allow_sample=False)
    assert splits.train_images.shape == (64, 1, 28, 28) and splits.test_labels.dtype == np.int64
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(isolated / "root"))
    assert datasets.load("mnist", download_missing=False, allow_sample=False).source.endswith("mnist")


def test_download_verifies_and_tries_the_next_mirror(isolated, served):
    with _Server({}) as dead, _Server(served) as live:
        splits = datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(dead.url, live.url), echo=_quiet)
    assert len(dead.requests) == 4 and len(live.requests) == 4
    assert splits.train_images.shape == (64, 1, 28, 28)
    assert sorted(os.listdir(isolated / "data")) == sorted(served)


def test_md5_mismatch_is_rejected_and_leaves_nothing(isolated, served):
    corrupted = dict(served)
    name = "train-labels-idx1-ubyte.gz"
    body = bytearray(gzip.decompress(served[name]))
    body[-1] ^= 1
    corrupted[name] = gzip.compress(bytes(body))
    with _Server(corrupted) as server:
        with pytest.raises(datasets.DataUnavailableError, match="md5"):
            datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(server.url,), allow_sample=False,
                          echo=_quiet)
    assert name not in os.listdir(isolated / "data")
    assert not [f for f in os.listdir(isolated / "data") if f.startswith(".")]


def test_interrupted_download_leaves_no_partial_file(isolated, served):
    name = "t10k-images-idx3-ubyte.gz"
    with _Server(served, truncate={name}) as server:
        with pytest.raises(datasets.DataUnavailableError, match=name):
            datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(server.url,), allow_sample=False,
                          echo=_quiet)
    assert name not in os.listdir(isolated / "data")
    assert not [f for f in os.listdir(isolated / "data") if f.startswith(".")]


def test_offline_falls_back_loudly_to_the_shipped_sample(isolated, capsys):
    with _Server({}) as server:  # every file missing: as good as offline
        splits = datasets.load("mnist", mirrors=(server.url,))
    assert splits.is_sample and splits.train_images.shape == (3000, 1, 28, 28)
    assert np.bincount(splits.train_labels).tolist() == [300] * 10
    assert np.bincount(splits.test_labels).tolist() == [100] * 10
    assert "WARNING" in capsys.readouterr().err


def test_shipped_sample_is_small_and_valid():
    total = sum(os.path.getsize(path) for path in datasets.sample_paths().values())
    assert total < 1_500_000
    assert read_idx(datasets.sample_paths()["test_images"]).shape == (1000, 28, 28)


def test_fashion_mnist_has_no_sample_fallback(isolated):
    with _Server({}) as server:
        with pytest.raises(datasets.DataUnavailableError, match="fashion-mnist was not found"):
            datasets.load("fashion-mnist", mirrors=(server.url,), echo=_quiet)
