"""Two search workers share one study in a real PostgreSQL server (Debian's package, on localhost, in the test's own
data directory); one is killed with SIGKILL mid-trial (its train_ffcv.py run has saved an epoch). No finished trial is lost, the dead trial is failed by its
stale heartbeat and its design retried, and the other worker finishes the study. Every trial is a real train_ffcv.py
run on a small subset of Fashion-MNIST.

Skipped, saying why, where PostgreSQL or its Python driver is not installed (CI installs both: the Makefile's
APT_PKGS and the test extras).
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPACE = "P4(d=16)+CLS1-{ENC(h=2),DWC3,DWC5,DWC7}-LIN"
TRIALS = 3


def pg_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them out of PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    ctl = shutil.which("pg_ctl")
    return Path(ctl).parent if ctl else None


def as_server_user(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a server program: as the ``postgres`` user when we are root (the server refuses to run as root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def postgres() -> str:
    """A PostgreSQL server on 127.0.0.1 with a database ``optuna``; yields its URL, stops and deletes it after."""
    psycopg2 = pytest.importorskip("psycopg2", reason="the PostgreSQL driver psycopg2 is not installed "
                                                      "(pip install psycopg2-binary; the test extras have it)")
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed on this machine (apt-get install postgresql; CI installs it)")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    root = Path(tempfile.mkdtemp(prefix="sdpnet-pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, user.pw_uid, user.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        r = as_server_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"])
        assert r.returncode == 0, r.stderr
        r = as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
                            "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
        assert r.returncode == 0, r.stderr + (data / "server.log").read_text(errors="replace")
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE optuna")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def worker(url: str, data: Path, out: Path) -> subprocess.Popen:
    """One ``search`` worker (its own --out folder, as on its own machine) on the shared study."""
    args = [sys.executable, "-m", "sdpnet", "search", SPACE, "-C", "configs/fashion_mnist.yaml",
            f"--data.train_path={data / 'train.beton'}", f"--data.val_path={data / 'val.beton'}",
            "--data.train_subset=256", "--data.val_subset=100", "--data.num_workers=1", "--training.batch_size=64",
            "--quiet", "--budget.epochs=3", "--trials", str(TRIALS), "--sampler", "random", "--storage", url,
            "--study", "shared", "--heartbeat", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class TestSharedStudy:
    def test_two_workers_one_killed(self, postgres, fashion_mnist_betons, tmp_path):
        """Worker A is SIGKILLed in its first trial; B fails A's stale trial, retries it and finishes the study."""
        import optuna

        data = fashion_mnist_betons
        a = worker(postgres, data, tmp_path / "a")
        b = None
        try:
            deadline = time.monotonic() + 300
            while not list((tmp_path / "a").glob("*/checkpoint.pt")):   # A is in a trial and has saved an epoch
                assert time.monotonic() < deadline and a.poll() is None, a.stdout.read() if a.poll() is not None else "no epoch"
                if b is None and list((tmp_path / "a").glob("*/train.log")):   # the study and its tables exist
                    b = worker(postgres, data, tmp_path / "b")
                time.sleep(0.05)
            b = b or worker(postgres, data, tmp_path / "b")
            storage = optuna.storages.RDBStorage(postgres)
            before = {t.number: t.state for t in optuna.load_study(study_name="shared", storage=storage).trials}
            a.send_signal(signal.SIGKILL)
            a.wait()
            out_b, _ = b.communicate(timeout=600)
        finally:
            for p in (a, b):
                if p is not None and p.poll() is None:
                    p.kill()
        assert b.returncode == 0, out_b[-3000:]
        trials = optuna.load_study(study_name="shared", storage=storage).trials
        state = optuna.trial.TrialState
        killed = [t for t in trials if t.user_attrs.get("worker", {}).get("pid") == a.pid]
        assert len(killed) == 1 and killed[0].state == state.FAIL   # stale heartbeat: failed, not counted
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
        assert len(retried) == 1 and retried[0].state == state.COMPLETE and retried[0].params == killed[0].params
        for number, s in before.items():   # nothing finished before the kill was lost
            if s in (state.COMPLETE, state.PRUNED):
                assert trials[number].state == s
        finished = [t for t in trials if t.state == state.COMPLETE]
        assert len(finished) >= TRIALS and not [t for t in trials if t.state == state.RUNNING]
        for t in finished:   # each value is its run's result
            folder = Path(t.user_attrs["folder"])
            assert t.value == json.loads((folder / "results.json").read_text())["top1"] > 0
        assert Path(retried[0].user_attrs["folder"]).parent == tmp_path / "b"
