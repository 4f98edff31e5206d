"""A team tracking server on one machine: PostgreSQL holds runs and the registry, ``mlflow server`` serves them
over HTTP and proxies an artifact store.

``python -m pipelines.server --dir /srv/ffn-mlflow [--port 5000] [--pg-port 5432] [--artifacts URI]`` starts
both (creating the database cluster on first use), prints the ``MLFLOW_TRACKING_URI`` to export, and stops both
on Ctrl-C / SIGTERM. Needs Debian's ``postgresql`` package (or any PostgreSQL >= 12 with ``initdb`` on PATH) and
``psycopg2`` (the project's ``server`` extra). Run as root, the cluster belongs to the ``postgres`` user.

The cluster listens on 127.0.0.1 only, with ``trust`` authentication for the ``mlflow`` role: fine on a
single-user host or in CI. For a shared host see the README (a password, ``listen_addresses``, TLS).
Tests and ``python -m pipelines.bench reliability`` drive :class:`TeamServer` directly, to stop and restart the
HTTP server under a running job.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # Debian links a few programs into /usr/local/bin, not createdb
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    raise ServerError("PostgreSQL's server programs (initdb, pg_ctl) were not found: install them "
                      "(Debian: apt-get install postgresql) or put their folder on PATH")


class Postgres:
    """One PostgreSQL cluster in ``root/pgdata`` on 127.0.0.1:``port`` with a database ``mlflow``."""

    def __init__(self, root: Path, port: int | None = None):
        self.root, self.port = Path(root), port or free_port()
        self.data, self.log = self.root / "pgdata", self.root / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://mlflow@127.0.0.1:{self.port}/mlflow"

    def _run(self, prog: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(pg_bin() / prog), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and res.returncode:
            raise ServerError(f"{prog} failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-800:]}")
        return res

    def start(self) -> "Postgres":
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:  # the postgres user must reach and own its folders
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, self.user)
            for d in self.root.parents:
                if not os.stat(d).st_mode & 0o001:
                    raise ServerError(f"the {self.user} user cannot enter {d} (mode {os.stat(d).st_mode & 0o777:o}): "
                                      f"use a --dir it can reach, or chmod o+x {d}")
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "mlflow", "--auth=trust", "-E", "UTF8", "--no-instructions")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}", "start")
        res = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "mlflow", "mlflow", check=False)
        if res.returncode and "already exists" not in res.stderr:
            raise ServerError(f"createdb failed: {res.stderr.strip()}")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)


class MlflowServer:
    """``mlflow server`` on 127.0.0.1:``port``; artifacts proxied to ``artifacts`` (a folder or s3://, gs://, ...)."""

    def __init__(self, backend: str, artifacts: str, port: int | None = None, log: Path | None = None):
        self.backend, self.artifacts, self.port, self.log = backend, artifacts, port or free_port(), log
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> "MlflowServer":
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend,
               "--artifacts-destination", self.artifacts, "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        # mlflow execs uvicorn from PATH: the interpreter's own bin first
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"mlflow server exited with {self.proc.returncode}; log: {self.log}")
            if self.healthy():
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"mlflow server did not answer on {self.uri}/health within {timeout:.0f} s; log: {self.log}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, hard: bool = False) -> None:
        """SIGTERM (or SIGKILL when ``hard``) to the server and its workers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


class TeamServer:
    """PostgreSQL + mlflow server under one folder. ``with TeamServer(dir) as s: s.uri``."""

    def __init__(self, root: Path | str, port: int | None = None, pg_port: int | None = None,
                 artifacts: str | None = None):
        self.root = Path(root).resolve()
        self.postgres = Postgres(self.root / "postgres", pg_port)
        art = artifacts or str(self.root / "artifacts")
        self.mlflow = MlflowServer(self.postgres.url, art, port, log=self.root / "mlflow-server.log")

    @property
    def uri(self) -> str:
        return self.mlflow.uri

    def start(self) -> "TeamServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        try:
            self.mlflow.start()
        except BaseException:
            self.postgres.stop()
            raise
        return self

    def stop(self) -> None:
        self.mlflow.stop()
        self.postgres.stop()

    def __enter__(self) -> "TeamServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m pipelines.server", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="folder for the database cluster, artifacts and logs")
    p.add_argument("--port", type=int, default=5000, help="HTTP port of the tracking server (127.0.0.1)")
    p.add_argument("--pg-port", type=int, default=5432)
    p.add_argument("--artifacts", default=None, help="artifact store URI (default: <dir>/artifacts)")
    a = p.parse_args(argv)
    server = TeamServer(a.dir, a.port, a.pg_port, a.artifacts)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start()
        print(f"tracking server up: export MLFLOW_TRACKING_URI={server.uri}  (PostgreSQL {server.postgres.url}; "
              f"artifacts {server.mlflow.artifacts}); Ctrl-C stops both", flush=True)
        while server.mlflow.proc.poll() is None:
            time.sleep(1)
        print(f"error: mlflow server exited ({server.mlflow.proc.returncode}); log {server.mlflow.log}",
              file=sys.stderr)
        return 1
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
