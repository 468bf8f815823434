"""The property-based bad-input suite: every public function of nbconv.functional, called with seeded
valid and invalid arguments (tests/functional_fuzz.py), each case a clean ValueError/TypeError or a result
equal to the float64 reference. Batches run in subprocesses, so a crash fails the test naming its case.

NBCONV_FUZZ_EXAMPLES (examples per batch, default 60) and NBCONV_FUZZ_BATCHES (default 2) make a longer
soak, e.g. NBCONV_FUZZ_EXAMPLES=2000 NBCONV_FUZZ_BATCHES=8.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nbconv.functional as F
from tests import functional_fuzz

EXAMPLES = int(os.environ.get("NBCONV_FUZZ_EXAMPLES", "60"))
BATCHES = int(os.environ.get("NBCONV_FUZZ_BATCHES", "2"))
ROOT = Path(__file__).resolve().parent.parent


def test_every_public_function_has_a_reference_builder_or_is_junk_tested():
    with_builder, junk_only = functional_fuzz.covered()
    assert sorted(with_builder + junk_only) == sorted(F.__all__)
    assert not junk_only, f"add a builder with a float64 reference to tests/functional_fuzz.py for {junk_only}"


@pytest.mark.parametrize("batch", range(BATCHES))
def test_seeded_calls_in_a_subprocess(batch):
    done = subprocess.run([sys.executable, "-m", "tests.functional_fuzz", str(1000 + batch), str(EXAMPLES)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    cases = [line["case"] for line in lines if "case" in line]
    if done.returncode < 0 or done.returncode > 1:  # killed by a signal, or aborted: the last case started did it
        pytest.fail(f"the interpreter died (exit {done.returncode}) running {cases[-1] if cases else '?'}\n"
                    f"{done.stderr[-3000:]}")
    assert done.returncode == 0, f"a case failed (hypothesis's falsifying example is below)\n{done.stderr[-6000:]}"
    outcomes = lines[-1]["outcomes"]
    # the suite must keep exercising both sides: clean errors and results checked against the reference
    assert outcomes.get("clean error", 0) > EXAMPLES // 10 and outcomes.get("checked against the reference", 0) > \
        EXAMPLES // 10, outcomes
