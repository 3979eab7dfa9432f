"""The coverage-guided fuzz targets (fuzz/, atheris) run briefly in CI without a crash.

Each target runs as its own process, from the seed corpus that fuzz/seeds.py
derives from the op registry, for ``CHATNET_FUZZ_SECONDS`` seconds (20 by
default). A crash — an exception, an error logged, a rule of
tests/support/wire_checks.py broken — makes libFuzzer exit non-zero and leave a
``crash-*`` file; the test shows how to reproduce it. Long runs: fuzz/README.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import seeds

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["wire_server", "client_core"])
def test_the_fuzz_target_finds_no_crash_in_a_short_run(target, tmp_path):
    """fuzz/<target>.py runs for a few seconds of libFuzzer from the seeds:
    exit status 0 and no crash file."""
    pytest.importorskip("atheris", reason="atheris has wheels for Linux only")
    seeds.write(tmp_path)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    seconds = int(os.environ.get("CHATNET_FUZZ_SECONDS", "20"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHATNET_FUZZ_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / f"{target}.py"), str(tmp_path / target),
         f"-dict={tmp_path / 'wire.dict'}", f"-max_total_time={seconds}",
         f"-artifact_prefix={artifacts}/", "-print_final_stats=1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=seconds + 120)
    crashes = sorted(artifacts.iterdir())
    log = "\n".join(line for line in run.stderr.splitlines()
                    if not line.startswith("INFO: Instrumenting"))
    assert run.returncode == 0 and not crashes, (
        f"fuzz/{target}.py found a crash ({[c.name for c in crashes]}); reproduce with "
        f"`python fuzz/{target}.py <crash file>`:\n{log[-6000:]}")
    assert "Done " in run.stderr, log[-3000:]
