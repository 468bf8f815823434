"""nbconv.peer_watch: a vanished process (gone, a zombie, or its pid reused) is told from a live one; the watch
names it only while armed, within seconds, sleeps while idle, and stops at once."""
import os
import subprocess
import threading
import time

import pytest

from nbconv.peer_watch import PeerWatch, process_gone, process_start_time

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="tells a zombie from a live process through /proc")


@pytest.fixture
def child():
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def test_a_live_process_is_not_gone_and_a_killed_one_is(child):
    started = process_start_time(child.pid)
    assert started is not None and not process_gone(child.pid, started)
    assert not process_gone(os.getpid(), process_start_time(os.getpid()))
    assert process_gone(child.pid, str(int(started) + 1))  # the pid of another process, started later
    child.kill()
    deadline = time.monotonic() + 5
    while not process_gone(child.pid, started):  # a zombie until reaped: gone already
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.wait()
    assert process_gone(child.pid, started)
    assert process_start_time(child.pid) is None


def test_the_armed_watch_names_a_killed_peer_once_within_seconds(child):
    calls = []
    named = threading.Event()
    watch = PeerWatch({3: (child.pid, process_start_time(child.pid))}, lambda rank: (calls.append(rank), named.set()),
                      interval=0.05)
    with watch, watch.armed():
        time.sleep(0.3)
        assert calls == []  # alive
        child.kill()
        killed = time.monotonic()
        assert named.wait(5)
        assert time.monotonic() - killed < 2
        time.sleep(0.3)
    assert calls == [3]


def test_an_unarmed_watch_leaves_a_finished_peer_alone(child):
    calls = []
    with PeerWatch({1: (child.pid, process_start_time(child.pid))}, calls.append, interval=0.05) as watch:
        child.kill()
        child.wait()
        time.sleep(0.4)
        assert calls == [] and watch.gone() == 1  # gone, but nobody waits for it
    assert calls == []


def test_the_watch_sleeps_when_idle_and_stops_at_once(child):
    watch = PeerWatch({1: (child.pid, process_start_time(child.pid))}, lambda rank: None).start()
    try:
        with watch.armed():
            cpu = time.process_time()
            time.sleep(2.0)  # this thread sleeps; whatever CPU the process spends is the watch's
            assert time.process_time() - cpu < 0.1
    finally:
        started = time.monotonic()
        watch.stop()
        assert time.monotonic() - started < 0.2


def test_no_peers_no_thread():
    watch = PeerWatch({}, lambda rank: None).start()
    assert watch._thread is None and watch.gone() is None
    watch.stop()
