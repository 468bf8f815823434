"""Finding, downloading (against a local HTTP server on 127.0.0.1) and falling back to the shipped sample."""
import gzip
import hashlib
import http.server
import os
import threading
import time

import numpy as np
import pytest

from nbconv.data import DataFileError, datasets, download
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
    """Serves files from a dict {name: bytes}; `truncate` names files whose body is cut off mid-way,
    `trickle` files sent one byte every `interval` seconds (for at most 40 bytes, then cut off); with
    announce_length=False no Content-Length header is sent, with a string that string is sent as it."""

    def __init__(self, files, truncate=(), trickle=(), interval=0.25, announce_length=True):
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
                if announce_length:
                    self.send_header("Content-Length", announce_length if isinstance(announce_length, str)
                                     else str(len(body)))
                self.end_headers()
                if name in trickle:
                    for byte in body[:40]:
                        try:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(interval)
                    return
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


def test_a_trickling_server_fails_by_the_deadline_and_leaves_nothing(isolated):
    destination = str(isolated / "data" / "slow.gz")
    with _Server({"slow.gz": bytes(1000)}, trickle={"slow.gz"}, interval=0.2) as server:
        started = time.monotonic()
        with pytest.raises(download.DownloadError, match="deadline"):
            download.download_file(server.url + "slow.gz", destination, {"0" * 32}, connect_timeout=5, deadline=1.0)
        assert time.monotonic() - started < 3.0  # the whole body would take 8 s
    assert os.listdir(isolated / "data") == []


def test_a_silent_server_fails_by_the_connection_timeout(isolated):
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        started = time.monotonic()
        with pytest.raises(download.DownloadError):
            download.download_file(f"http://127.0.0.1:{listener.getsockname()[1]}/x.gz",
                                   str(isolated / "data" / "x.gz"), {"0" * 32}, connect_timeout=0.5, deadline=60)
        assert time.monotonic() - started < 3
    finally:
        listener.close()
    assert os.listdir(isolated / "data") == []


def test_stale_partial_downloads_are_removed(isolated, served):
    stale = isolated / "data" / ".train-images-idx3-ubyte.gz.abc123.part"
    stale.write_bytes(b"left by a killed run")
    with _Server(served) as server:
        datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(server.url,), echo=_quiet)
    assert not stale.exists() and not [f for f in os.listdir(isolated / "data") if f.startswith(".")]


@pytest.mark.parametrize("writer", ["99999999999999999999", "\u00b2", "0x1f"])
def test_a_part_named_by_no_pid_is_removed_as_stale(isolated, served, writer):
    """A part whose name holds no process id (a pid past what a process number holds, a Unicode digit) ended the
    download in an OverflowError or ValueError traceback while looking for its writer; it is stale."""
    stale = isolated / "data" / f".train-images-idx3-ubyte.gz.{writer}-0123456789abcdef.part"
    stale.write_bytes(b"left by no nbconv")
    with _Server(served) as server:
        datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(server.url,), echo=_quiet)
    assert not stale.exists()


def test_another_live_download_of_the_same_file_is_left_alone(isolated, served):
    """A second nbconv started on the same cold cache deleted the first one's partial download, which then failed
    (a FileNotFoundError traceback at its rename); now only parts whose writer is gone are removed."""
    import subprocess
    import sys
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        name = "train-images-idx3-ubyte.gz"
        alive_part = isolated / "data" / f".{name}.{live.pid}-0123456789abcdef.part"
        dead_part = isolated / "data" / f".{name}.{gone.pid}-0123456789abcdef.part"
        alive_part.write_bytes(b"being written")
        dead_part.write_bytes(b"left by a killed run")
        with _Server(served) as server:
            datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(server.url,), echo=_quiet)
        assert alive_part.exists() and not dead_part.exists()
    finally:
        live.kill()
        live.wait()


def test_a_missing_data_dir_is_an_error_and_is_not_created(isolated):
    missing = isolated / "no" / "such"
    with pytest.raises(datasets.DataUnavailableError, match="does not exist"):
        datasets.load("mnist", data_dir=str(missing))
    assert not (isolated / "no").exists()


def test_a_cache_that_cannot_be_made_falls_back_or_names_it(isolated, monkeypatch):
    """A file where the per-user cache should be (or a read-only home) was a NotADirectoryError traceback."""
    (isolated / "not-a-folder").write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "not-a-folder"))
    with _Server({}) as server:
        splits = datasets.load("mnist", mirrors=(server.url,), echo=_quiet)
        assert splits.is_sample
        for name in ("fashion-mnist", "cifar10"):
            with pytest.raises(datasets.DataUnavailableError, match=r"cannot create .*not-a-folder.*Not a directory"):
                datasets.load(name, mirrors=(server.url,), echo=_quiet)


def test_a_folder_that_takes_no_files_is_a_download_error_and_leaves_nothing(isolated, served, monkeypatch):
    """A read-only --data-dir was a PermissionError traceback instead of the download's error (and MNIST's
    fallback to the shipped sample)."""
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(download, "_create_part", refused)
    with _Server(served) as server:
        with pytest.raises(datasets.DataUnavailableError, match="cannot download .* Permission denied"):
            datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(server.url,), allow_sample=False,
                          echo=_quiet)
        assert datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(server.url,), echo=_quiet).is_sample
    assert os.listdir(isolated / "data") == []


def test_a_write_that_fails_mid_download_is_a_download_error_and_leaves_nothing(isolated, served, monkeypatch):
    """A full disk while writing was an OSError traceback."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):
            self.file = real_fdopen(handle, "wb")

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.file.close()

        def write(self, data):
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(download.os, "fdopen", lambda handle, mode: Full(handle))
    with _Server(served) as server:
        with pytest.raises(download.DownloadError, match="No space left on device"):
            download.download_file(server.url + "t10k-labels-idx1-ubyte.gz",
                                   str(isolated / "data" / "t10k-labels-idx1-ubyte.gz"), {"0" * 32})
    assert os.listdir(isolated / "data") == []


def test_downloaded_files_have_the_umask_mode(isolated, served):
    """Downloads were written 0600 (tempfile.mkstemp's mode), so a shared --data-dir's files were unreadable to
    everyone but the user who fetched them; now 0666 less the umask, like any file the user creates."""
    umask = os.umask(0o022)
    try:
        with _Server(served) as server:
            datasets.load("mnist", data_dir=str(isolated / "data"), mirrors=(server.url,), echo=_quiet)
    finally:
        os.umask(umask)
    modes = {name: os.stat(isolated / "data" / name).st_mode & 0o777 for name in served}
    assert set(modes.values()) == {0o644}, modes


def _write_split(directory, images, labels, split="test"):
    files = datasets.DATASETS["mnist"].files
    write_idx(os.path.join(directory, files[f"{split}_images"]), images)
    write_idx(os.path.join(directory, files[f"{split}_labels"]), labels)


@pytest.mark.parametrize("problem,message", [
    ("labels-200", r"t10k-labels-idx1-ubyte.gz: labels must be 0..9, found 200 at record 3"),
    ("32x32", r"t10k-images-idx3-ubyte.gz: test images are 32x32, mnist images are 28x28"),
    ("count", r"32 test images but 31 labels"),
    ("float-labels", r"labels must be integers"),
])
def test_files_that_do_not_belong_to_the_dataset_are_clear_errors(isolated, problem, message):
    directory = make_tiny_mnist(str(isolated / "data"))
    labels = np.arange(32, dtype=np.uint8) % 10
    images = np.zeros((32, 28, 28), np.uint8)
    if problem == "labels-200":
        labels[3] = 200
    elif problem == "32x32":
        images = np.zeros((32, 32, 32), np.uint8)
    elif problem == "count":
        labels = labels[:31]
    else:
        labels = labels.astype(np.float32)
    _write_split(directory, images, labels)
    with pytest.raises(DataFileError, match=message):
        datasets.load("mnist", data_dir=directory, download_missing=False)


def test_synthetic_data_is_deterministic_and_shaped_by_its_name():
    first = datasets.load("synthetic:3x10x12:4:50:20")
    second = datasets.load("synthetic:3x10x12:4:50:20")
    assert first.train_images.shape == (50, 3, 10, 12) and first.test_images.shape == (20, 3, 10, 12)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)
    assert set(np.unique(first.train_labels)) <= {0, 1, 2, 3} and first.class_names == ("0", "1", "2", "3")
    assert not np.array_equal(first.train_images[:20], first.test_images)
    assert not np.array_equal(datasets.load("synthetic:3x10x12:4:50:20", seed=1).train_images, first.train_images)
    info = datasets.describe("synthetic:3x10x12:4")
    assert info.shape == (3, 10, 12) and info.num_classes == 4 and len(info.mean) == 3
    for bad in ("synthetic:3x10:4", "synthetic:0x8x8:4", "synthetic:3x8x8:1", "synthetic:1x4096x4096:2:1000"):
        with pytest.raises(ValueError, match="synthetic"):
            datasets.describe(bad)


@pytest.mark.parametrize("announce_length", [True, False])
def test_a_file_larger_than_the_bound_is_cut_off_and_leaves_nothing(isolated, announce_length):
    destination = str(isolated / "data" / "big.gz")
    with _Server({"big.gz": bytes(300_000)}, announce_length=announce_length) as server:
        with pytest.raises(download.DownloadError, match="more than the 100,000 bytes" if not announce_length else
                           "announces 300,000 bytes, more than the 100,000"):
            download.download_file(server.url + "big.gz", destination, {"0" * 32}, max_bytes=100_000)
    assert os.listdir(isolated / "data") == []


@pytest.mark.parametrize("announced", ["12abc", "-5", "1e3", " ", "9" * 5000])
def test_a_malformed_content_length_is_a_download_error_and_leaves_nothing(isolated, announced):
    """A server's Content-Length that is not a number raised int()'s ValueError (a traceback) out of the download."""
    destination = str(isolated / "data" / "x.gz")
    with _Server({"x.gz": b"\x1f\x8b" + bytes(100)}, announce_length=announced) as server:
        with pytest.raises(download.DownloadError, match="Content-Length") as caught:
            download.download_file(server.url + "x.gz", destination, {"0" * 32})
    assert server.url in str(caught.value)
    assert os.listdir(isolated / "data") == []


def test_a_reply_without_content_length_downloads(isolated, monkeypatch):
    body = gzip.compress(bytes(range(256)) * 40)
    destination = str(isolated / "data" / "plain.gz")
    bars = []
    progressbar = download.click.progressbar

    def recorded(*args, **kwargs):  # the bar as a terminal would draw it: its length and the bytes it counted
        bar = progressbar(*args, **kwargs)
        bars.append(bar)
        return bar
    monkeypatch.setattr(download.click, "progressbar", recorded)
    with _Server({"plain.gz": body}, announce_length=False) as server:
        download.download_file(server.url + "plain.gz", destination, {hashlib.md5(body).hexdigest()})
    assert open(destination, "rb").read() == body
    assert bars[0].length is None and bars[0].pos == len(body)  # counting, not a bar full from the first chunk
