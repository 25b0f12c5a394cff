"""A throwaway PostgreSQL cluster for one test session, so that the store's PostgreSQL tests run
outside CI without touching the machine: initdb into a fresh temporary directory, a server on a
free port of 127.0.0.1 with its socket in that directory, a random password, and at the end the
server stopped and the directory deleted. A watchdog process does the same if the test session
dies without tearing down (SIGTERM, SIGKILL).

PostgreSQL refuses to run as root: run as root, the cluster belongs to the user ``postgres``
(``nobody`` where there is none), and the programs run as the owner of the cluster's directory.

Run as a script, it stops or starts a cluster (the outage tests' control command), or watches one:

    python tests/pg_cluster.py ctl DIRECTORY BINDIR stop|start
    python tests/pg_cluster.py watch DIRECTORY BINDIR    # removes the cluster at EOF on stdin
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROLE = "hbfp"
DATABASE = "hbfp_test"
SUPERUSER = "postgres"
PROGRAMS = ("initdb", "pg_ctl", "postgres")
START_ATTEMPTS = 5  # another process may take the free port before the server does
SCRIPT = str(Path(__file__).resolve())


@dataclass(frozen=True)
class Cluster:
    url: str
    ctl: list[str]  # the command that stops or starts the server, with "stop" or "start" added


def find_bindir() -> Path | None:
    """Where the server's programs are: ``pg_config --bindir``, the newest of Debian's
    /usr/lib/postgresql/*/bin, or pg_ctl's folder on PATH; None without all of them."""
    candidates = []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        )
        candidates.append(Path(bindir.stdout.strip()))
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(
        debian,
        key=lambda p: [int(n) for n in p.parent.name.split(".") if n.isdigit()],
        reverse=True,
    )
    if pg_ctl := shutil.which("pg_ctl"):
        candidates.append(Path(pg_ctl).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / program, os.X_OK) for program in PROGRAMS):
            return bindir
    return None


@contextlib.contextmanager
def throwaway(bindir: Path) -> Iterator[Cluster]:
    """A cluster of its own for the time of the with-block, removed afterwards however it ends."""
    user = _server_user()
    directory = Path(tempfile.mkdtemp(prefix="hbfp-dse-pg-", dir=_temp_root(user)))
    watchdog = None
    try:
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
        watchdog = subprocess.Popen(
            [sys.executable, SCRIPT, "watch", str(directory), str(bindir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the test session does not reach it
        )
        password = secrets.token_urlsafe(24)
        _initdb(directory, bindir, password)
        port = _start(directory, bindir)
        _create_role_and_database(port, password)
        yield Cluster(
            url=f"postgresql+psycopg://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}",
            ctl=[sys.executable, SCRIPT, "ctl", str(directory), str(bindir)],
        )
    finally:
        remove(directory, bindir)
        if watchdog is not None:
            watchdog.kill()  # its work is done
            watchdog.wait()


def remove(directory: Path, bindir: Path) -> None:
    """Stops the cluster's server, if it runs, and deletes the cluster's directory."""
    if not directory.exists():
        return
    if (directory / "data" / "postmaster.pid").exists():
        pg_ctl(directory, bindir, "stop", "-m", "immediate")
    shutil.rmtree(directory, ignore_errors=True)


def pg_ctl(
    directory: Path, bindir: Path, action: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """pg_ctl stop or start, waiting until it is done; the server logs to server.log (a server
    that kept our output pipes open would keep the caller waiting)."""
    data, log = directory / "data", directory / "server.log"
    return _run(
        directory, bindir / "pg_ctl", action, "-D", data, "-l", log, "-w", "-t", "120", *options
    )


def _server_user() -> pwd.struct_passwd | None:
    """Whom the server runs as: None for ourselves; as root, which PostgreSQL refuses, postgres,
    or nobody where there is no postgres."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and there is neither a postgres nor a nobody user")


def _temp_root(user: pwd.struct_passwd | None) -> str:
    """The temporary folder, unless the server's user cannot reach into it: then /tmp."""
    root = Path(tempfile.gettempdir()).resolve()
    if user is not None and not all(p.stat().st_mode & stat.S_IXOTH for p in (root, *root.parents)):
        return "/tmp"
    return str(root)


def _run(directory: Path, program: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Runs one of the server's programs as the owner of the cluster's directory."""
    owner = directory.stat()
    as_owner = {}
    if os.geteuid() == 0 and owner.st_uid != 0:
        as_owner = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}
    return subprocess.run(
        [str(program), *map(str, args)],
        cwd=directory,
        env={**os.environ, "LC_ALL": "C"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        **as_owner,
    )


def _write(directory: Path, path: Path, text: str) -> None:
    """Writes a file that the server reads, owned as the cluster's directory is."""
    path.write_text(text)
    owner = directory.stat()
    os.chown(path, owner.st_uid, owner.st_gid)
    path.chmod(0o600)


def _check(result: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if result.returncode != 0:
        details = result.stdout + result.stderr
        if log is not None and log.exists():
            details += log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"the throwaway PostgreSQL cluster: {what} failed:\n{details}")


def _initdb(directory: Path, bindir: Path, password: str) -> None:
    password_file = directory / "password"
    _write(directory, password_file, password)
    try:
        result = _run(
            directory,
            bindir / "initdb",
            "--pgdata", directory / "data",
            "--username", SUPERUSER,
            "--pwfile", password_file,
            "--auth", "scram-sha-256",
            "--no-locale",
            "--encoding", "UTF8",
            "--no-sync",
            "--no-instructions",
        )  # fmt: skip
    finally:
        password_file.unlink()
    _check(result, "initdb")
    with (directory / "data" / "postgresql.conf").open("a") as conf:
        conf.write("include = 'hbfp-dse.conf'\n")


def _start(directory: Path, bindir: Path) -> int:
    """Starts the server on a free port, which its configuration keeps for later restarts."""
    log = directory / "server.log"
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{directory}'",
            # Its data are thrown away: durability would only slow the tests down.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        text = "".join(f"{name} = {value}\n" for name, value in settings.items())
        _write(directory, directory / "data" / "hbfp-dse.conf", text)
        result = pg_ctl(directory, bindir, "start")
        if result.returncode == 0:
            return port
        in_use = log.exists() and "could not bind" in log.read_text(errors="replace")
        if not in_use or attempt == START_ATTEMPTS - 1:
            _check(result, "starting the server", log)
        log.unlink()
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _create_role_and_database(port: int, password: str) -> None:
    """The role and database that .ci/postgres.sh makes too: the tests run as no superuser."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=SUPERUSER,
        password=password,
        dbname="postgres",
        autocommit=True,
    ) as connection:
        connection.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(password)
            )
        )
        connection.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(DATABASE), sql.Identifier(ROLE)
            )
        )


def main(argv: list[str]) -> int:
    command, directory, bindir, *rest = argv
    if command == "ctl":
        result = pg_ctl(Path(directory), Path(bindir), *rest)
        sys.stderr.write(result.stdout + result.stderr)
        return result.returncode
    if command == "watch":
        sys.stdin.buffer.read()  # until the test session's end of the pipe closes, however it ends
        remove(Path(directory), Path(bindir))
        return 0
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
