"""A throw-away PostgreSQL server for the annotation-store tests, or the reason there is none.

Uses the server binaries of the machine (``initdb`` / ``pg_ctl`` on PATH or in ``/usr/lib/postgresql/*/bin``,
Debian's ``postgresql`` package), else those the pip package ``pgserver`` ships (dev extras), and the psycopg 3
driver (dev extras). The server listens on a Unix socket
in its own temporary folder only (no TCP port), trusts local connections, and is stopped at the end. PostgreSQL
refuses to run as root: as root, the server runs as the unprivileged user ``nobody``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "rsir"
PORT = 5432  # only names the socket file; nothing listens on TCP


def find_bin(system: bool = True) -> Path | None:
    """The folder holding initdb and pg_ctl: the machine's (PATH, Debian's /usr/lib/postgresql/*/bin), else the
    server that the pip package pgserver ships (dev extras); None when neither is here."""
    dirs: list[Path] = []
    if system:
        on_path = shutil.which("initdb")
        dirs += ([Path(on_path).resolve().parent] if on_path else []) + [
            Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    for d in dirs:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    return None


class PgServer:
    """``start()`` returns None when the server runs, else the reason it cannot (for pytest.skip)."""

    def __init__(self, system: bool = True) -> None:
        self.system = system
        self.root: Path | None = None
        self.bin: Path | None = None
        self.user: str | None = None

    def start(self) -> str | None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "psycopg is not installed (pip install -e '.[dev]' or 'rsir[postgres]')"
        self.bin = find_bin(self.system)
        if self.bin is None:
            return ("no PostgreSQL server binaries (initdb, pg_ctl on PATH, in /usr/lib/postgresql/*/bin or from "
                    "the pip package pgserver); apt-get install postgresql or pip install pgserver")
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("nobody")
            except KeyError:
                return "running as root and there is no user 'nobody' to run PostgreSQL as"
            self.user = "nobody"
        # /tmp: short enough for the socket path (about 100 bytes at most) and reachable by 'nobody'
        self.root = Path(tempfile.mkdtemp(prefix="rsir-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        if self.user:
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        data = self.root / "data"
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        try:
            self._run([str(self.bin / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
                       "--no-sync"], env)
            opts = f"-k {self.root} -c listen_addresses='' -p {PORT} -c fsync=on"
            self._run([str(self.bin / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(self.root / "log"),
                       "-w", "-t", "60", "start"], env)
        except (OSError, subprocess.CalledProcessError) as e:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-400:] if log.exists() else ""
            out = getattr(e, "stderr", "") or ""
            self.stop()
            return f"the PostgreSQL server did not start ({e}; {str(out)[-300:]} {tail})"
        return None

    def _run(self, cmd: list[str], env: dict[str, str]) -> None:
        subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, user=self.user, timeout=120,
                       cwd=self.root)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@/{database}?host={self.root}&port={PORT}"

    def create_database(self) -> str:
        """A fresh database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.root), port=PORT, user=USER, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        with psycopg.connect(host=str(self.root), port=PORT, user=USER, dbname="postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if self.bin is not None and (data / "postmaster.pid").exists():
            subprocess.run([str(self.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, user=self.user, timeout=60, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
