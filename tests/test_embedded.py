"""The embedded PostgreSQL's joiners: who still counts when deciding who is the last to leave."""

import contextlib
import json
import os
import subprocess
import sys

from service import embedded


def test_joiners_that_are_gone_or_whose_pid_was_reused_are_forgotten(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    reused = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".handle_pids.json").write_text(json.dumps([ended.pid, reused.pid, os.getpid()]))
        joiners = embedded.Joiners(tmp_path, contextlib.nullcontext())
        joiners.record_start(os.getpid())
        # The joiner that had reused.pid started earlier: reused.pid is another process now.
        starts = json.loads((tmp_path / ".handle_starts.json").read_text())
        starts[str(reused.pid)] = embedded.process_start_time(reused.pid) - 60
        (tmp_path / ".handle_starts.json").write_text(json.dumps(starts))
        joiners.forget_departed()
        assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [os.getpid()]
        assert list(json.loads((tmp_path / ".handle_starts.json").read_text())) == [str(os.getpid())]
    finally:
        reused.kill()
        reused.wait()


def test_a_live_joiner_with_no_recorded_start_still_counts(tmp_path):
    (tmp_path / ".handle_pids.json").write_text(json.dumps([os.getppid(), os.getpid()]))
    embedded.Joiners(tmp_path, contextlib.nullcontext()).forget_departed()
    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [os.getppid(), os.getpid()]
