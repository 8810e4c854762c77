"""A real Celery worker (and beat) in their own processes, on the test's database and broker."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class CeleryProcess:
    def __init__(self, app, tmp_path: Path, kind: str, pool: str = "solo", **settings):
        self.log = tmp_path / f"{kind}-{len(list(tmp_path.glob(f'{kind}*.log')))}.log"
        env = {
            **os.environ,
            "BACKOFFICE_ENV": "testing",
            "BACKOFFICE_INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "BROKER_FOLDER": app.config["BROKER_FOLDER"],
            "CELERY_QUEUE": app.config["CELERY_QUEUE"],
            "OUTBOX_FOLDER": app.config["OUTBOX_FOLDER"],
            "BEAT_SCHEDULE_FILE": app.config["BEAT_SCHEDULE_FILE"],
            **{key: str(value) for key, value in settings.items()},
        }
        # The app's broker, whatever the environment says: a test may run the embedded one beside REDIS_URL.
        env.pop("REDIS_URL", None)
        if app.config.get("REDIS_URL"):
            env["REDIS_URL"] = app.config["REDIS_URL"]
        args = [sys.executable, "-m", "celery", "-A", "tasks.worker"]
        if kind == "worker":
            # The threads pool (the Procfile's) where a test needs tasks running side by side.
            args += ["worker", f"--pool={pool}", *(["--concurrency", "8"] if pool == "threads" else []),
                     "-Q", app.config["CELERY_QUEUE"], "--without-mingle",
                     "--without-gossip", "--without-heartbeat", "-l", "INFO"]
        else:
            args += ["beat", "-l", "INFO", "--max-interval", "1"]
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared in the log:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no acknowledgement of the task in hand."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_celery(app, tmp_path):
    started: list[CeleryProcess] = []

    def start(kind: str = "worker", pool: str = "solo", **settings) -> CeleryProcess:
        proc = CeleryProcess(app, tmp_path, kind, pool, **settings)
        started.append(proc)
        if kind == "worker":
            proc.wait_for_log("ready.")
        return proc

    yield start
    for proc in started:
        proc.stop()


class Forwarder:
    """A TCP port that is closed until `open()`, then forwards every connection to `upstream` (host, port):
    a broker that is down, then back, at one address."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.connections += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        for sock in self.connections:
            sock.close()


def queued_messages(app) -> int:
    celery = app.extensions["celery"]
    with celery.connection_for_write() as conn:
        return conn.default_channel.queue_declare(app.config["CELERY_QUEUE"], passive=False).message_count
