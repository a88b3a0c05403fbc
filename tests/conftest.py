"""Shared fixtures: a synthetic labelled dataset and a detector trained on it once per session.

Tests are grouped like the package: ``tests/media`` for ``multimodal_df/media``, and so on.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "multimodal_df" / "examples"

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of 96 fixture clips: train/valid/test x RVRA/FVRA/RVFA/FVFA."""
    from multimodal_df.testing.fixtures import make_dataset

    return make_dataset(tmp_path_factory.mktemp("fixtures"), seed=0)


@pytest.fixture(scope="session")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory with vision/, audio/ and detector/ trained by the real CLI on the fixtures."""
    from multimodal_df import train

    out = tmp_path_factory.mktemp("run")
    code = train.main(
        [
            "--stage",
            "all",
            "--config",
            "tiny",
            "--manifest",
            str(dataset),
            "--out",
            str(out),
            "--cache-dir",
            str(out / "cache"),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="session")
def detector_dir(trained: Path) -> Path:
    return trained / "detector"


# ------------------------------------------------------------------------------------------- the end of a run
# A run's result is final once pytest has reported it. What the tests started must not keep the run from ending:
# CI once printed a green summary and then waited 80 minutes for the process (or a process holding its output) to
# end. Leftovers are named on stderr, so a leak stays visible, then ended.
_PR_SET_CHILD_SUBREAPER = 36
_exit_status = 0


def pytest_configure(config: pytest.Config) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        # Orphans of the tests' subprocesses (a browser's helpers, a killed trainer's workers) come back to this
        # process instead of init, so the end of the run can find them.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def _descendants(root: int) -> list[int]:
    """Ids of the live (not zombie) processes below ``root``, from Linux's /proc."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            # The command name in field 2 may hold spaces and parentheses: state and parent id follow its last ")".
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != "Z":
            parent[int(entry.name)] = int(ppid)
    found: list[int] = []
    frontier = [root]
    while frontier:
        kids = [pid for pid, ppid in parent.items() if ppid in frontier]
        found += kids
        frontier = kids
    return found


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if not sys.platform.startswith("linux"):
        return
    for pid in _descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
            print(f"after the tests: process {pid} still running, ended: {cmd}", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join(timeout=20)
            if t.is_alive():
                print(f"after the tests: thread {t.name!r} still running", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Interpreter teardown (atexit handlers of thread pools and native runtimes) would wait on those threads.
    os._exit(_exit_status)
