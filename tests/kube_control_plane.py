"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler (scripts/test-install.d/60-kubernetes.sh builds them), on loopback ports of their
own, with a certificate authority, certificates and service-account keys made here.

No kubelet runs (README, Kubernetes): pods are scheduled onto Node objects the tests register, and
never start. Everything else the API server does (validation, admission, RBAC, service-account
tokens, the controllers, the scheduler) is the real thing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.harness import free_port_block

VERSION = "v1.36.3"  # scripts/test-install.d/60-kubernetes.sh
BIN = Path(os.environ.get("AF_KUBERNETES_DIR", f"/var/lib/analysis-facility/kubernetes-{VERSION}")) / "bin"
ETCD = Path("/usr/bin/etcd")
SERVICE_RANGE = "10.96.0.0/24"
START_TIMEOUT_S = 120


def installed() -> str | None:
    """None when everything is there; otherwise what is missing, in words."""
    missing = [str(p) for p in (BIN / "kube-apiserver", BIN / "kube-controller-manager", BIN / "kube-scheduler", ETCD)]
    missing = [p for p in missing if not Path(p).exists()]
    return f"missing {', '.join(missing)} (scripts/test-install.d/60-kubernetes.sh)" if missing else None


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


@dataclass(frozen=True)
class Credential:
    cert: Path
    key: Path


class Authority:
    """A certificate authority in `folder`: it signs the servers' and the clients' certificates."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.key = _key()
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("af-test-kubernetes-ca"))
            .issuer_name(_name("af-test-kubernetes-ca"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )  # digital signature, cert sign, CRL sign
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = folder / "ca.crt"
        self.key_file = folder / "ca.key"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(_pem_key(self.key))
        self.key_file.chmod(0o600)

    def issue(self, name: str, common: str, org: str | None = None, hosts: tuple[str, ...] = ()) -> Credential:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common, org))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            usage = x509.ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = x509.ExtendedKeyUsageOID.CLIENT_AUTH
        cert = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(self.key, hashes.SHA256())
        credential = Credential(self.folder / f"{name}.crt", self.folder / f"{name}.key")
        credential.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        credential.key.write_bytes(_pem_key(key))
        credential.key.chmod(0o600)
        return credential


class PortTaken(RuntimeError):
    """A component could not listen: another process took its port after it was chosen."""


class ControlPlane:
    """The four processes, started by `start()` and stopped by `stop()` (or as a context manager)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.pki = folder / "pki"
        self.pki.mkdir(parents=True)
        self.logs = folder / "logs"
        self.logs.mkdir()
        self.api_port = 0
        self.url = ""
        self.etcd_url = ""
        self.ca = Authority(self.pki)
        self.serving = self.ca.issue(
            "apiserver", "kube-apiserver", hosts=("127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc")
        )
        # system:masters bypasses RBAC: the tests' own administrator.
        self.admin = self.ca.issue("admin", "af-test-admin", org="system:masters")
        self._sa_key = _key()
        (self.pki / "sa.key").write_bytes(_pem_key(self._sa_key))
        (self.pki / "sa.pub").write_bytes(
            self._sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # -- configuration ---------------------------------------------------------------------------
    def kubeconfig(self, name: str, credential: Credential | None = None, token: str | None = None) -> Path:
        """A kubeconfig file for this API server with a client certificate or a bearer token."""
        user: dict[str, Any] = {"token": token} if token else {}
        if credential is not None:
            user = {"client-certificate": str(credential.cert), "client-key": str(credential.key)}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "af-test", "cluster": {"server": self.url, "certificate-authority": str(self.ca.cert_file)}}
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": "af-test", "user": name}}],
            "current-context": name,
        }
        path = self.folder / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def session(self, token: str | None = None) -> requests.Session:
        """An HTTP session to the API server: as the administrator, or with a bearer token."""
        http = requests.Session()
        # Otherwise $REQUESTS_CA_BUNDLE (set on these machines) overrides `verify` on every request.
        http.trust_env = False
        http.verify = str(self.ca.cert_file)
        if token:
            http.headers["Authorization"] = f"Bearer {token}"
        else:
            http.cert = (str(self.admin.cert), str(self.admin.key))
        return http

    # -- processes -------------------------------------------------------------------------------
    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            process = self._processes[name]
            if process.poll() is not None:
                tail = self.log_tail(name)
                if "address already in use" in tail:
                    raise PortTaken(tail)
                raise RuntimeError(f"{name} exited with {process.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {START_TIMEOUT_S} s: {self.log_tail(name)}")
            time.sleep(0.3)

    def _serve(
        self, name: str, ports: int, command: Callable[..., list[str]], ready: Callable[..., bool]
    ) -> tuple[int, ...]:
        """Start `name` on `ports` free ports and wait until `ready(*ports)`; returns the ports.

        Every port of this machine is also an ephemeral one (ip_local_port_range 1024-65535): the
        API server's many connections to etcd can take a port between its choice and its bind, so
        a component that could not listen is started again on other ports.
        """
        for _ in range(4):
            base = free_port_block(ports)
            chosen = tuple(range(base, base + ports))
            log = (self.logs / f"{name}.log").open("wb")
            self._processes[name] = subprocess.Popen(
                command(*chosen), stdout=log, stderr=subprocess.STDOUT, cwd=self.folder
            )
            try:
                self._wait(name, lambda chosen=chosen: ready(*chosen))
                return chosen
            except PortTaken:
                continue
        raise RuntimeError(f"{name}: every port tried was taken: {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _answers(self, url: str, **kwargs: Any) -> bool:
        http = requests.Session()
        http.trust_env = False  # see session()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return http.get(url, timeout=3, **kwargs).status_code == 200
        except requests.RequestException:
            return False

    def start(self) -> ControlPlane:
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _etcd(self, client: int, peer: int) -> list[str]:
        return [
            str(ETCD),
            "--name=af-test",
            f"--data-dir={self.folder / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=af-test=http://127.0.0.1:{peer}",
            "--log-level=warn",
        ]

    def _apiserver(self, port: int) -> list[str]:
        pki = self.pki
        return [
            str(BIN / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            # The `kubernetes` Service's endpoints may not be a loopback address; nothing here
            # reaches the API server through that Service.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={self.serving.cert}",
            f"--tls-private-key-file={self.serving.key}",
            f"--client-ca-file={self.ca.cert_file}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _controller_manager(self, port: int, kubeconfig: Path) -> list[str]:
        pki = self.pki
        return [
            str(BIN / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={self.ca.cert_file}",
            f"--cluster-signing-cert-file={self.ca.cert_file}",
            f"--cluster-signing-key-file={self.ca.key_file}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
        ]

    def _start_all(self) -> None:
        client, _ = self._serve(
            "etcd", 2, self._etcd, lambda client, peer: self._answers(f"http://127.0.0.1:{client}/health")
        )
        self.etcd_url = f"http://127.0.0.1:{client}"
        admin = {"verify": str(self.ca.cert_file), "cert": (str(self.admin.cert), str(self.admin.key))}
        (self.api_port,) = self._serve(
            "kube-apiserver",
            1,
            self._apiserver,
            lambda port: self._answers(f"https://127.0.0.1:{port}/readyz", **admin),
        )
        self.url = f"https://127.0.0.1:{self.api_port}"

        # Their /healthz needs no credentials (an always-allowed path); they serve it with a
        # certificate they make themselves, so only that they answer is checked.
        def healthy(port: int) -> bool:
            return self._answers(f"https://127.0.0.1:{port}/healthz", verify=False)

        manager = self.kubeconfig(
            "controller-manager", self.ca.issue("controller-manager", "system:kube-controller-manager")
        )
        self._serve("kube-controller-manager", 1, lambda port: self._controller_manager(port, manager), healthy)
        scheduler = self.kubeconfig("scheduler", self.ca.issue("scheduler", "system:kube-scheduler"))
        self._serve(
            "kube-scheduler",
            1,
            lambda port: [
                str(BIN / "kube-scheduler"),
                f"--kubeconfig={scheduler}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
            ],
            healthy,
        )

    def stop(self) -> None:
        for name in reversed(list(self._processes)):
            process = self._processes[name]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self._processes.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def control_plane(folder: Path) -> Iterator[ControlPlane]:
    """A started control plane in `folder` (emptied first), stopped afterwards."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with ControlPlane(folder) as plane:
        yield plane


@contextlib.contextmanager
def module_control_plane(tmp_path_factory: Any) -> Iterator[ControlPlane]:
    """A test module's control plane (pytest's tmp_path_factory gives its folder); a missing
    install fails the test: `make test` installs it, so missing is a broken install, not a skip."""
    missing = installed()
    if missing:
        pytest.fail(missing)
    with control_plane(tmp_path_factory.mktemp("kubernetes") / "plane") as started:
        yield started


def resource_url(plane: ControlPlane, http: requests.Session, obj: dict[str, Any], namespace: str) -> str:
    """The URL of `obj` in the API server, found through the API's own discovery documents."""
    version = obj["apiVersion"]
    group = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    listing = http.get(f"{plane.url}{group}", timeout=10)
    listing.raise_for_status()
    resource = next(r for r in listing.json()["resources"] if r["kind"] == obj["kind"] and "/" not in r["name"])
    scope = f"/namespaces/{namespace}" if resource["namespaced"] else ""
    return f"{plane.url}{group}{scope}/{resource['name']}/{obj['metadata']['name']}"


def apply(plane: ControlPlane, obj: dict[str, Any], namespace: str, http: requests.Session | None = None) -> Any:
    """Server-side apply of one object (what `kubectl apply --server-side` sends); the answer."""
    http = http or plane.session()
    return http.patch(
        resource_url(plane, http, obj, namespace),
        params={"fieldManager": "af-tests", "force": "true"},
        data=json.dumps(obj),
        headers={"Content-Type": "application/apply-patch+yaml"},
        timeout=30,
    )


def service_account_token(plane: ControlPlane, namespace: str, account: str) -> str:
    """A token of a ServiceAccount (TokenRequest API), as a pod running under it would get."""
    answer = plane.session().post(
        f"{plane.url}/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        json={"spec": {"expirationSeconds": 600}},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["status"]["token"]
