"""The facility's Rucio server (facility.yaml data.rucio): datasets of the data lake by DID.

`af up` plans it (runtime.json data.rucio: port, scope, RSE, root's userpass identity), writes its
rucio.cfg into the state folder, builds its SQLite database once (af/rucio_bootstrap.py, run with
the server's own Python) and runs it under supervisord with gunicorn. Once it answers, the origin
becomes a Rucio Storage Element and the catalogue's samples become datasets (`register_samples`,
which `af data generate` and `af data import-samples` call too; the replicas of files `af data`
removes are marked unavailable by `forget_replicas`).

The RSE is non-deterministic: each replica's PFN is given when it is registered, root://origin//store/...,
so Rucio names the files where the origin already has them (a deterministic RSE would hash them
into scope/ab/cd/name). Rucio keeps the path; the PFN's host and port come from the RSE's protocol,
which `af up` updates when the origin moves (af up --port). A file's DID name is its path in the
lake (/store/af/...), one dataset per sample in data.rucio.scope.

The server lives in a venv of its own (scripts/install.d/30-rucio-server.sh): rucio pins
dependencies the facility does not run. The facility speaks to it with rucio-clients only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dask_backends.rucio_dids import RucioServer, client
from facility.model import Facility
from facility.runtime import Runtime

COMPONENT = "rucio"
SERVER_DIR_ENV = "AF_RUCIO_SERVER_DIR"
# Above the hub's Dask dashboard service: Prometheus, the exporter and the operator page take +1..+3.
PORT_OFFSET_ABOVE_DASHBOARDS = 4
ROOT_ACCOUNT = "root"
ROOT_IDENTITY = "af-root"
BOOTSTRAPPED = "bootstrapped"
XROOTD_PROTOCOL = "rucio.rse.protocols.xrootd.Default"
GUNICORN_WORKERS = 2  # sync workers: SQLite takes one writer at a time
BOOTSTRAP_TIMEOUT_S = 120


class RucioSetupError(RuntimeError):
    """The Rucio server cannot be set up or reached; the message says what to do."""


def server_dir() -> Path:
    """Where scripts/install.d/30-rucio-server.sh installed the server (same rule as the script)."""
    explicit = os.environ.get(SERVER_DIR_ENV)
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/opt/analysis-facility/rucio-server")
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "analysis-facility/rucio-server"


def server_python() -> Path:
    python = server_dir() / "bin" / "python"
    if not (server_dir() / ".af-stamp").is_file() or not python.exists():
        raise RucioSetupError(
            f"the Rucio server is not installed in {server_dir()} (facility.yaml sets data.rucio); "
            "run `make install` (scripts/install.d/30-rucio-server.sh)"
        )
    return python


def plan_rucio(
    fac: Facility, dashboards_port: int, public_port: int | None, previous: dict[str, Any]
) -> dict[str, Any]:
    """runtime.json's data.rucio: empty without data.rucio. With `af up --port` the server moves into
    the facility's port block; root's password is kept across runs (it is in the database)."""
    if fac.data is None or fac.data.rucio is None:
        return {}
    settings = fac.data.rucio
    port = dashboards_port + PORT_OFFSET_ABOVE_DASHBOARDS if public_port else (urlsplit(settings.url).port or 80)
    return {
        "url": f"http://127.0.0.1:{port}",
        "managed": True,
        "port": port,
        "scope": settings.scope,
        "rse": settings.rse,
        "account": ROOT_ACCOUNT,
        "username": ROOT_IDENTITY,
        "password": previous.get("password") or secrets.token_urlsafe(24),
    }


def settings_of(runtime: Runtime) -> dict[str, Any]:
    return runtime.data.get("rucio") or {}


def folder(runtime: Runtime) -> Path:
    return runtime.state_path / "rucio"


def config_file(runtime: Runtime) -> Path:
    return folder(runtime) / "rucio.cfg"


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_config(runtime: Runtime) -> Path:
    """rucio.cfg (and the alembic.ini it names) in <state>/rucio, private: it holds root's password."""
    rucio = settings_of(runtime)
    here = folder(runtime)
    here.mkdir(mode=0o700, exist_ok=True)
    database = f"sqlite:///{here / 'rucio.db'}"
    migrations = sorted(server_dir().glob("lib/python3*/site-packages/rucio/db/sqla/migrate_repo"))
    if not migrations:
        raise RucioSetupError(f"{server_dir()} has no rucio/db/sqla/migrate_repo; run `make install` again")
    # alembic wants its logging sections too (else KeyError 'formatters').
    alembic = f"""[alembic]
sqlalchemy.url = {database}
script_location = {migrations[-1]}
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)s %(message)s
"""
    _private_write(here / "alembic.ini", alembic)
    # [api] endpoints stays unset: older documentation's list names a blueprint Rucio 41 removed.
    # [cache] url names a port nobody serves: no memcached, so no cache shared with another server.
    config = f"""# The facility's Rucio server, written by `af up` from facility.yaml data.rucio; edits are overwritten.
[common]
logdir = {runtime.state_path / "logs"}
loglevel = WARNING
[database]
default = {database}
[cache]
url = 127.0.0.1:1
[bootstrap]
userpass_identity = {rucio["username"]}
userpass_pwd = {rucio["password"]}
userpass_email = root@localhost
[alembic]
cfg = {here / "alembic.ini"}
"""
    _private_write(config_file(runtime), config)
    return config_file(runtime)


def server_env(runtime: Runtime) -> dict[str, str]:
    return {"RUCIO_CONFIG": str(config_file(runtime))}


def bootstrap(runtime: Runtime) -> bool:
    """Build the database once (tables, base VO, root account); returns whether it did now."""
    marker = folder(runtime) / BOOTSTRAPPED
    if marker.exists():
        return False
    (folder(runtime) / "rucio.db").unlink(missing_ok=True)  # a half-built one from a failed run
    result = subprocess.run(
        [str(server_python()), str(Path(__file__).with_name("rucio_bootstrap.py"))],
        env={**os.environ, **server_env(runtime)},
        capture_output=True,
        text=True,
        timeout=BOOTSTRAP_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RucioSetupError(f"building the Rucio database in {folder(runtime)} failed: {last}")
    marker.touch()
    return True


def prepare(runtime: Runtime) -> None:
    """Before supervisord starts the server: its configuration, and its database the first time."""
    if settings_of(runtime).get("managed"):
        server_python()
        write_config(runtime)
        bootstrap(runtime)


def server_command(runtime: Runtime) -> list[str]:
    """gunicorn serving Rucio's Flask application, in the foreground (supervisord keeps its log)."""
    rucio = settings_of(runtime)
    return [
        str(server_python()),
        "-m",
        "gunicorn",
        f"--bind=127.0.0.1:{rucio['port']}",
        f"--workers={GUNICORN_WORKERS}",
        "--timeout=60",
        "--access-logfile=-",
        "rucio.web.rest.flaskapi.v1.main:application",
    ]


def server_of(runtime: Runtime) -> RucioServer:
    return RucioServer.from_runtime(settings_of(runtime))


def register_origin(runtime: Runtime) -> None:
    """The scope, the origin as a non-deterministic RSE with its root:// protocol (host and port as
    runtime.json has them now), and no quota for root on it. Idempotent."""
    from rucio.common.exception import Duplicate, RSENotFound

    rucio = settings_of(runtime)
    origin = runtime.data["origin"]["url"]  # root://127.0.0.1:PORT
    host, port = origin.removeprefix("root://").rsplit(":", 1)
    api = client(server_of(runtime))
    if rucio["scope"] not in api.list_scopes():
        api.add_scope(ROOT_ACCOUNT, rucio["scope"])
    try:
        api.get_rse(rucio["rse"])
    except RSENotFound:
        api.add_rse(rucio["rse"], deterministic=False)
    protocol = {
        "scheme": "root",
        "hostname": host,
        "port": int(port),
        "prefix": "/",
        "impl": XROOTD_PROTOCOL,
        "domains": {
            "lan": {"read": 1, "write": 1, "delete": 1},
            "wan": {"read": 1, "write": 1, "delete": 1, "third_party_copy_read": 1, "third_party_copy_write": 1},
        },
    }
    current = _root_protocols(api, rucio["rse"])
    if any(p["hostname"] != host or int(p["port"]) != int(port) for p in current):
        api.delete_protocols(rucio["rse"], "root")  # the origin moved: PFNs follow the protocol
        current = []
    if not current:
        with contextlib.suppress(Duplicate):
            api.add_protocol(rucio["rse"], protocol)
    api.set_local_account_limit(ROOT_ACCOUNT, rucio["rse"], -1)


def _root_protocols(api: Any, rse: str) -> list[dict[str, Any]]:
    """The RSE's root:// protocols (get_rse lists them; get_protocols answers with the RSE's settings)."""
    return [p for p in api.get_rse(rse)["protocols"] if p["scheme"] == "root"]


def adler32(path: Path) -> str:
    """Rucio's checksum: adler32 as eight hex digits."""
    value = 1
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            value = zlib.adler32(block, value)
    return f"{value & 0xFFFFFFFF:08x}"


def register_samples(runtime: Runtime, lake_root: Path, samples: dict[str, dict[str, Any]]) -> list[str]:
    """Make each catalogue sample a dataset scope:sample holding exactly its files (bytes and adler32
    computed here), each a replica on the origin's RSE. Files of an earlier generation are detached;
    their replicas go when the file is gone from the lake. Returns the DIDs of the datasets."""
    from rucio.common.exception import DataIdentifierAlreadyExists, DataIdentifierNotFound, Duplicate

    rucio = settings_of(runtime)
    scope, rse = rucio["scope"], rucio["rse"]
    origin = runtime.data["origin"]["url"]
    api = client(server_of(runtime))
    dids = []
    for sample, entry in sorted(samples.items()):
        try:
            attached = {f["name"] for f in api.list_files(scope, sample)}
        except DataIdentifierNotFound:
            with contextlib.suppress(DataIdentifierAlreadyExists):
                api.add_dataset(scope, sample)
            attached = set()
        wanted = [f["path"] for f in entry["files"]]
        new = []
        for path in wanted:
            if path in attached:
                continue
            on_disk = lake_root / path.lstrip("/")
            new.append(
                {
                    "scope": scope,
                    "name": path,
                    "bytes": on_disk.stat().st_size,
                    "adler32": adler32(on_disk),
                    "pfn": f"{origin}/{path}",  # root://host:port//store/...
                }
            )
        if new:
            try:
                api.add_replicas(rse, new)
            except Duplicate:  # some were registered by an earlier, interrupted run
                for replica in new:
                    with contextlib.suppress(Duplicate):
                        api.add_replicas(rse, [replica])
            api.attach_dids(scope, sample, [{"scope": scope, "name": f["name"]} for f in new])
        stale = sorted(attached - set(wanted))
        if stale:  # an earlier generation: runs in flight may still read it, so only its replicas stay
            api.detach_dids(scope, sample, [{"scope": scope, "name": name} for name in stale])
        dids.append(f"{scope}:{sample}")
    return dids


def forget_replicas(runtime: Runtime, paths: list[str]) -> int:
    """Mark the origin's replicas of files removed from the lake (lake paths) UNAVAILABLE, so no
    listing hands them out; returns how many. Not deleted: Rucio's generic policy lets no account
    delete replicas (its reaper daemon does, which the facility does not run)."""
    if not paths or not settings_of(runtime):
        return 0
    rucio = settings_of(runtime)
    scope, rse = rucio["scope"], rucio["rse"]
    from rucio.common.exception import DataIdentifierNotFound

    api = client(server_of(runtime))
    gone = []
    for path in paths:  # a few files per sample; some never registered (data.rucio set later)
        did = {"scope": scope, "name": path}
        try:
            if any(rse in (r.get("rses") or {}) for r in api.list_replicas([did], ignore_availability=True)):
                gone.append(did)
        except DataIdentifierNotFound:
            continue
    if gone:
        api.update_replicas_states(rse, [{**did, "state": "U"} for did in gone])
    return len(gone)
