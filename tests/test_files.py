"""Atomic file writes: modes from the umask, stale temporary files of killed writers cleaned, only ours."""
import os
import subprocess
import sys
import time

import pytest

from nbconv import files


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_take_their_mode_from_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = tmp_path / "out.bin"
        files.atomic_write_bytes(str(path), b"payload")
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"payload"
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask


def test_a_replaced_file_is_whole_and_nothing_is_left_beside_it(tmp_path):
    path = tmp_path / "out.bin"
    files.atomic_write_bytes(str(path), b"old")
    files.atomic_write_bytes(str(path), b"new" * 1000)
    assert path.read_bytes() == b"new" * 1000 and os.listdir(tmp_path) == ["out.bin"]


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_save(tmp_path):
    target = tmp_path / "run.npz"
    stale = tmp_path / f".tmp-{_dead_pid()}-0123456789abcdef-run.npz"
    live = tmp_path / f".tmp-{os.getppid()}-0123456789abcdef-run.npz"  # a live process's write in progress
    other_target = tmp_path / f".tmp-{_dead_pid()}-0123456789abcdef-other.npz"
    legacy_old, legacy_new = tmp_path / ".tmp-abcd1234run.npz", tmp_path / ".tmp-wxyz9876run.npz"
    foreign = tmp_path / ".tmp-notes-run.npz"  # not a name nbconv makes
    for path in (stale, live, other_target, legacy_old, legacy_new, foreign):
        path.write_bytes(b"partial")
    an_hour_ago = time.time() - files.LEGACY_STALE_SECONDS - 60
    os.utime(legacy_old, (an_hour_ago, an_hour_ago))
    files.atomic_write_bytes(str(target), b"whole")
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(["run.npz", live.name, other_target.name, legacy_new.name, foreign.name])


def test_a_temporary_named_with_a_number_past_any_pid_is_stale_not_a_crash(tmp_path):
    """A temporary whose pid field holds more than a pid can (no nbconv wrote it, or a damaged name) made every
    later save of its target fail in os.kill with an OverflowError; it names no live writer, so it is removed."""
    target = tmp_path / "run.npz"
    overflowing = tmp_path / ".tmp-99999999999999999999-0123456789abcdef-run.npz"
    overflowing.write_bytes(b"partial")
    files.atomic_write_bytes(str(target), b"whole")
    assert sorted(os.listdir(tmp_path)) == ["run.npz"] and target.read_bytes() == b"whole"


def test_a_killed_writer_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    target = tmp_path / "big.bin"
    code = ("import os, signal, nbconv.files as f\n"
            "real = os.replace\n"
            "def die(*a): os.kill(os.getpid(), signal.SIGKILL)\n"
            "os.replace = die\n"
            f"f.atomic_write_bytes({str(target)!r}, b'x' * 100000)\n")
    subprocess.run([sys.executable, "-c", code], timeout=60)
    assert [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]  # killed before the rename
    files.atomic_write_bytes(str(target), b"y")
    assert os.listdir(tmp_path) == ["big.bin"] and target.read_bytes() == b"y"


def test_check_writable_names_the_option_and_leaves_nothing(tmp_path):
    files.check_writable(str(tmp_path / "new" / "out.npz"))
    assert os.listdir(tmp_path / "new") == []
    with pytest.raises(ValueError, match="--out: .* is a directory"):
        files.check_writable(str(tmp_path))
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ValueError, match=r"--out: cannot write .*file/out.npz"):
        files.check_writable(str(blocked / "out.npz"))
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="permission denied"):
            files.check_writable(str(locked / "out.npz"))
