"""Several hosts on one machine for the tests of many hosts and one database: PostgreSQL,
PgBouncer in transaction mode, app hosts started as `make serve` starts them, nginx in
front, each from the recipe files operators copy (docs/deploy/).

The hosts are network namespaces (`ip netns`, veth pairs on one bridge, addresses in
10.217.0.0/24) where this machine lets us make them (root), so a host can be cut off
or slowed down by itself; elsewhere they all share 127.0.0.1, each on a port of its own
(`LOOPBACK`, and the tests that need a network of their own are skipped saying so).
Everything started here runs in a process group of its own and is killed with it;
namespaces, links and files are deleted at the end, whatever the test did.
"""

import contextlib
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from backend import embedded
from tests.servers import PROJECT_ROOT, free_port, get

DEPLOY = PROJECT_ROOT / "docs" / "deploy"
PREFIX = "h17"  # every namespace, link and bridge made here
BRIDGE = f"{PREFIX}br0"
SUBNET = "10.217.0"
DEBIAN_POSTGRES = Path("/usr/lib/postgresql/15/bin")


def render(name: str, values: dict) -> str:
    """A recipe file of docs/deploy/ with its ${...} names filled in; nginx's own
    $variables are left as they are."""
    return string.Template((DEPLOY / name).read_text()).safe_substitute(values)


def env_file(text: str) -> dict[str, str]:
    """The NAME=value lines of an environment file."""
    lines = (line.strip() for line in text.splitlines())
    pairs = (line.partition("=") for line in lines if line and not line.startswith("#"))
    return {name: value for name, _, value in pairs}


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=check)


# ---------------------------------------------------------------------------------------
# Hosts


@dataclass
class Host:
    """A machine of the test: a network namespace, or the loopback (`namespace` None)."""

    name: str
    address: str
    namespace: str | None = None

    def command(self, *command: str | Path, user: int | None = None) -> list[str]:
        """`command` as run on this host, as the account `user` (a uid) if given."""
        words = [str(word) for word in command]
        if user is not None:
            account = embedded.server_account()
            gid = account.pw_gid if account else user
            words = ["setpriv", f"--reuid={user}", f"--regid={gid}", "--clear-groups", *words]
        return ["ip", "netns", "exec", self.namespace, *words] if self.namespace else words

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*command), capture_output=True, text=True, check=check)

    def drop_traffic_to(self, other: "Host") -> None:
        """A partition: every packet from this host to `other` is dropped."""
        self.run("iptables", "-A", "OUTPUT", "-d", other.address, "-j", "DROP")

    def heal(self) -> None:
        self.run("iptables", "-F", "OUTPUT")

    def delay_proxy(self, port: int, target: str, target_port: int, milliseconds: int = 0):
        """tests/delay_proxy.py on this host: `port` forwards to `target`, whose answers
        arrive `milliseconds` late (this machine's kernel may lack tc netem). Stopped
        with SIGSTOP, it is a link that carries nothing."""
        command = self.command(
            sys.executable, "-m", "tests.delay_proxy", self.address, str(port), target,
            str(target_port), str(milliseconds),
        )  # fmt: skip
        log = Path(tempfile.mkstemp(prefix=f"{PREFIX}-delay-", suffix=".log")[1])
        proxy = Process(command, log, cwd=PROJECT_ROOT).start()
        wait_for(lambda: "listening" in proxy.log, "the delay proxy listening")
        return proxy


def _delete_network() -> None:
    """What an earlier run of ours may have left behind."""
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{PREFIX}-"):
            _run("ip", "netns", "delete", name, check=False)
    _run("ip", "link", "delete", BRIDGE, check=False)


@contextlib.contextmanager
def network(names: list[str]):
    """One Host per name: namespaces on a bridge if they can be made, else (or with
    CLUSTER_TOPOLOGY=loopback) the loopback. Yields (hosts by name, "netns" or
    "loopback", why the loopback if it is)."""
    loopback = {name: Host(name, "127.0.0.1") for name in names}
    if os.environ.get("CLUSTER_TOPOLOGY") == "loopback":
        yield loopback, "loopback", "CLUSTER_TOPOLOGY=loopback"
        return
    _delete_network()
    try:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    except (OSError, subprocess.CalledProcessError) as error:
        yield loopback, "loopback", (getattr(error, "stderr", "") or str(error)).strip()
        return
    try:
        _run("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        hosts = {}
        for number, name in enumerate(names, start=2):
            namespace, link = f"{PREFIX}-{name}", f"{PREFIX}v{name}"
            _run("ip", "netns", "add", namespace)
            _run("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0",
                 "netns", namespace)  # fmt: skip
            _run("ip", "link", "set", link, "master", BRIDGE, "up")
            host = Host(name, f"{SUBNET}.{number}", namespace)
            host.run("ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
            host.run("ip", "link", "set", "eth0", "up")
            host.run("ip", "link", "set", "lo", "up")
            hosts[name] = host
        yield hosts, "netns", ""
    finally:
        _delete_network()


# ---------------------------------------------------------------------------------------
# Processes


@dataclass
class Process:
    """A long-running program of a host, in a process group of its own, its output in a file."""

    command: list[str]
    log_path: Path
    env: dict | None = None
    cwd: Path | None = None
    popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """`sig` to the whole group: the program and every process it started."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.kill(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=wait)
        self.kill(signal.SIGKILL)  # the group: a child left behind, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)


def wait_for(condition, what: str, timeout: float = 30.0, every: float = 0.05):
    """Until `condition()` is truthy (its value), or AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if value := condition():
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)


def _account() -> tuple[int, int]:
    """PostgreSQL's and PgBouncer's account: they refuse to run as root."""
    account = embedded.server_account()
    if account is None:
        return os.getuid(), os.getgid()
    return account.pw_uid, account.pw_gid


def _own_directory(prefix: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{prefix}-"))
    uid, gid = _account()
    os.chown(directory, uid, gid)
    directory.chmod(0o755)
    return directory


# ---------------------------------------------------------------------------------------
# PostgreSQL and PgBouncer


@dataclass
class Postgres:
    host: Host
    port: int
    directory: Path
    bindir: Path
    process: Process | None = None

    def admin_url(self, database: str = "app") -> str:
        return f"postgres://postgres@{self.host.address}:{self.port}/{database}"

    def start(self) -> None:
        command = [
            self.bindir / "postgres", "-D", self.directory / "data", "-p", str(self.port),
            f"--listen_addresses={self.host.address}",
            f"--unix_socket_directories={self.directory}",
            "--fsync=off", "--synchronous_commit=off", "--full_page_writes=off",
            "--max_connections=100", "--shared_buffers=32MB",
        ]  # fmt: skip
        log = self.directory / "postgres.log"
        self.process = Process(self.host.command(*command, user=_account()[0]), log).start()
        wait_for(self.accepting, f"PostgreSQL accepting connections:\n{log.read_text()[-3000:]}")

    def accepting(self) -> bool:
        psycopg.connect(self.admin_url("postgres"), connect_timeout=2).close()
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGINT)  # a fast shutdown

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def postgres(host: Host, port: int, password: str):
    """A throwaway cluster on `host` (Debian's PostgreSQL 15 if installed, else the
    embedded one), with the database `app` and its login role `app`."""
    bindir = DEBIAN_POSTGRES if (DEBIAN_POSTGRES / "postgres").exists() else embedded.binaries()
    directory = _own_directory("postgres")
    server = Postgres(host, port, directory, bindir)
    try:
        initdb = [bindir / "initdb", "-D", directory / "data", "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync"]  # fmt: skip
        subprocess.run(host.command(*initdb, user=_account()[0]), capture_output=True, check=True)
        with open(directory / "data" / "pg_hba.conf", "a") as hba:
            hba.write("host all all samenet trust\n")  # the test's own network
        server.start()
        with psycopg.connect(server.admin_url("postgres"), autocommit=True) as admin:
            admin.execute(f"CREATE ROLE app LOGIN PASSWORD '{password}'")
            admin.execute("CREATE DATABASE app OWNER app")
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class PgBouncer:
    host: Host
    port: int
    directory: Path
    values: dict
    process: Process | None = None

    def write_config(self) -> None:
        values = {**self.values, "PGBOUNCER_PORT": self.port}
        (self.directory / "pgbouncer.ini").write_text(render("pgbouncer.ini", values))

    def move(self, port: int) -> None:
        """Restart listening on `port` (its clients' connections are closed)."""
        self.port = port
        self.write_config()
        self.restart()

    def start(self) -> None:
        ini = self.directory / "pgbouncer.ini"
        command = self.host.command("pgbouncer", ini, user=_account()[0])
        self.process = Process(command, self.directory / "pgbouncer.log").start()
        wait_for(lambda: "process up" in self.process.log, "PgBouncer listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGINT)  # what Debian's service does: a safe shutdown

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def pgbouncer(host: Host, port: int, database: Postgres, password: str):
    """PgBouncer from docs/deploy/pgbouncer.ini in front of `database`."""
    directory = _own_directory("pgbouncer")
    values = {
        "POSTGRES_HOST": database.host.address,
        "POSTGRES_PORT": database.port,
        "PGBOUNCER_HOST": host.address,
        "PGBOUNCER_DIR": directory,
    }
    (directory / "userlist.txt").write_text(f'"app" "{password}"\n')
    bouncer = PgBouncer(host, port, directory, values)
    bouncer.write_config()
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# App hosts and the load balancer


@dataclass
class AppHost:
    """One app host: `make serve` with the environment of docs/deploy/app.env."""

    host: Host
    port: int
    env: dict
    log_path: Path
    process: Process | None = None
    starts: int = field(default=0)

    @property
    def url(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    @property
    def upstream(self) -> str:
        return f"{self.host.address}:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        command = self.host.command("make", "--no-print-directory", "serve")
        self.process = Process(command, self.log_path, env=self.env, cwd=PROJECT_ROOT).start()
        self.starts += 1

        def healthy() -> bool:
            if not self.process.running():
                raise AssertionError(f"make serve exited:\n{self.process.log[-5000:]}")
            return get(self.url, "/readyz", timeout=2).status == 200

        deadline = time.monotonic() + timeout
        while True:
            try:
                if healthy():
                    return
            except (OSError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url} not ready:\n{self.process.log[-5000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to make, uvicorn's supervisor and its workers at once."""
        self.process.kill(signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Nginx:
    host: Host
    port: int
    directory: Path
    apps: list[AppHost]
    process: Process | None = None
    watch: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    @property
    def conf(self) -> Path:
        return self.directory / "nginx.conf"

    def upstream_lines(self) -> str:
        return (self.directory / "upstream.conf").read_text()


NGINX_CONF = """\
daemon off;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


@contextlib.contextmanager
def nginx(host: Host, port: int, apps: list[AppHost]):
    """nginx with docs/deploy/nginx-site.conf, and docs/deploy/readyz-watch.sh keeping
    its upstream file, on `host`."""
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-nginx-"))
    directory.chmod(0o755)
    balancer = Nginx(host, port, directory, apps)
    upstream = directory / "upstream.conf"
    upstream.write_text("".join(f"    server {app.upstream};\n" for app in apps))
    listen = f"{host.address}:{port}"
    values = {"LISTEN": listen, "UPSTREAM_FILE": upstream}
    (directory / "site.conf").write_text(render("nginx-site.conf", values))
    balancer.conf.write_text(NGINX_CONF.format(dir=directory))
    try:
        command = host.command("nginx", "-c", balancer.conf)
        balancer.process = Process(command, directory / "nginx.out").start()
        wait_for(lambda: get(balancer.url, "/healthz", timeout=2).status == 200, "nginx serving")
        env = {**os.environ, "NGINX_RELOAD": f"nginx -c {balancer.conf} -s reload"}
        hosts = [app.upstream for app in apps]
        watch = host.command("sh", DEPLOY / "readyz-watch.sh", upstream, *hosts)
        balancer.watch = Process(watch, directory / "watch.log", env=env).start()
        first = f"readyz-watch: {len(apps)} ready"
        wait_for(lambda: first in balancer.watch.log, "readyz-watch's first round")
        yield balancer
    finally:
        if balancer.watch is not None:
            balancer.watch.stop()
        if balancer.process is not None:
            balancer.process.stop(signal.SIGQUIT)  # nginx's graceful stop
        shutil.rmtree(directory, ignore_errors=True)


def free_or(port: int, host: Host) -> int:
    """`port` on a host of its own; on the shared loopback, one the OS picks."""
    return port if host.namespace else free_port()
