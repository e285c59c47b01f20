"""A real kubelet for the tests' control plane: containerd, runc and a CNI bridge on this host.

This machine kind runs containers (namespaces work; cgroups are v1) with Debian's containerd 1.6
and runc, given three allowances (each checked while writing this): the kubelet is told to accept
cgroup v1 (`failCgroupV1: false`; Kubernetes 1.36 refuses it by default), containerd's CRI keeps
a pod's OOM score at its own (`restrict_oom_score_adj`: runc's init dies lowering it here), and the
kubelet's own cgroups are not managed (`cgroupsPerQOS: false`). Pods get addresses on a bridge of
their own (CNI `bridge` + `host-local`), reachable from this host, and reach this host at its
address on that bridge (Kubelet.host_address).

No registry can be reached, so the tests' images are built here from Debian's static busybox with
umoci and imported into containerd: a pod sandbox image and a small image with a shell and an
HTTP server. The notebook image `make images` builds (issue 24) is imported from its OCI layout
(single_image_archive) by tests/test_kube_notebook_pod.py; the chart's other images (the proxy,
XCache) are not built here, so the chart's other pods still run under the stand-in node of
tests/kube_dask_gateway.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import random
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import yaml

from tests.harness import free_port_block
from tests.kube_control_plane import BIN, ControlPlane

KUBELET = BIN / "kubelet"
CONTAINERD = Path("/usr/bin/containerd")
CTR = Path("/usr/bin/ctr")
UMOCI = Path("/usr/bin/umoci")
BUSYBOX = Path("/bin/busybox")
CNI_PLUGINS = Path("/usr/lib/cni")
PAUSE_IMAGE = "docker.io/library/af-pause:1"
SHELL_IMAGE = "docker.io/library/af-busybox:1"
REF_NAME = "org.opencontainers.image.ref.name"  # an image's tag in an OCI layout's index
CONTAINERD_NAME = "io.containerd.image.name"
# busybox applets the shell image offers.
APPLETS = ("sh", "echo", "sleep", "cat", "ls", "hostname", "httpd", "wget", "env", "id")


def missing() -> str | None:
    """None when a kubelet can run here; otherwise what is missing, in words."""
    needed = (KUBELET, CONTAINERD, CTR, UMOCI, BUSYBOX, CNI_PLUGINS / "bridge", Path("/usr/sbin/runc"))
    absent = [str(p) for p in needed if not p.exists()]
    return f"missing {', '.join(absent)} (scripts/test-install.d/60-kubernetes.sh)" if absent else None


def build_image(folder: Path, tag: str, command: list[str]) -> Path:
    """An OCI image layout (tar) of busybox with `command`, built with umoci."""
    layout, bundle = folder / f"layout-{tag}", folder / f"bundle-{tag}"
    subprocess.run([UMOCI, "init", "--layout", layout], check=True)
    subprocess.run([UMOCI, "new", "--image", f"{layout}:{tag}"], check=True)
    subprocess.run([UMOCI, "unpack", "--rootless", "--image", f"{layout}:{tag}", bundle], check=True)
    rootfs = bundle / "rootfs"
    binaries = rootfs / "bin"
    binaries.mkdir(parents=True, exist_ok=True)
    for folder_name in ("tmp", "etc", "proc", "sys", "dev"):
        (rootfs / folder_name).mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, binaries / "busybox")
    for applet in APPLETS:
        (binaries / applet).symlink_to("busybox")
    subprocess.run([UMOCI, "repack", "--image", f"{layout}:{tag}", bundle], check=True)
    args = [arg for word in command for arg in ("--config.cmd", word)]
    subprocess.run([UMOCI, "config", "--image", f"{layout}:{tag}", *args], check=True)
    archive = folder / f"{tag}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    return archive


def single_image_archive(layout: Path, tag: str, archive: Path, name: str) -> Path:
    """An OCI archive (tar) of the one image tagged `tag` in the OCI layout `layout`, named `name`
    (a full reference, as pods give it), for `ctr images import`: a layout's index may name many
    images, and ctr would unpack them all; and ctr keeps a short tag's name unqualified, which the
    CRI then cannot find (it looks for docker.io/library/<tag>)."""
    index = json.loads((layout / "index.json").read_text())
    chosen = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == tag]
    if not chosen:
        raise ValueError(f"no image tagged {tag!r} in the OCI layout {layout}")
    # containerd takes io.containerd.image.name as it is; a ref.name would get ctr's import- prefix.
    manifest = {**chosen[0], "annotations": {**chosen[0]["annotations"], REF_NAME: name, CONTAINERD_NAME: name}}

    def blob(digest: str) -> Path:
        algorithm, hexdigest = digest.split(":", 1)
        return layout / "blobs" / algorithm / hexdigest

    content = json.loads(blob(manifest["digest"]).read_text())
    digests = [manifest["digest"], content["config"]["digest"], *(layer["digest"] for layer in content["layers"])]
    with tarfile.open(archive, "w") as tar:
        tar.add(layout / "oci-layout", arcname="oci-layout")
        listed = json.dumps({**index, "manifests": [manifest]}).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(listed)
        tar.addfile(info, io.BytesIO(listed))
        for digest in dict.fromkeys(digests):
            tar.add(blob(digest), arcname=str(blob(digest).relative_to(layout)))
    return archive


def unmount_under(folder: Path) -> None:
    """Every mount below `folder`, deepest first: the kubelet's and containerd's leave some."""
    prefix = str(folder.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


class Kubelet:
    """containerd and a kubelet registered as node `name` with the control plane."""

    def __init__(self, plane: ControlPlane, folder: Path, name: str = "af-kubelet", snapshotter: str = "native"):
        """`snapshotter`: containerd's for pods' root file systems. "native" copies each layer's
        parent in full, fine for busybox; "overlayfs" for an image of many large layers."""
        self.plane = plane
        self.folder = folder
        self.name = name
        self.snapshotter = snapshotter
        self.socket = folder / "containerd.sock"
        self.subnet = f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"  # noqa: S311
        self.bridge = f"afbr{random.randint(0, 99999)}"  # noqa: S311
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def pod_logs(self) -> Path:
        """Where the kubelet keeps containers' output: <namespace>_<pod>_<uid>/<container>/0.log."""
        return self.folder / "pod-logs"

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """What the pod's container has written so far (its first run), or "" when there is none."""
        found = sorted(self.pod_logs.glob(f"{namespace}_{pod}_*/{container}/*.log"))
        return "\n".join(path.read_text(errors="replace") for path in found)

    @property
    def host_address(self) -> str:
        """This host's address on the pods' bridge (their gateway): where pods reach the host."""
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    def log_tail(self, name: str, lines: int = 30) -> str:
        text = (self.folder / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
        return f"--- {name} ---\n" + "\n".join(text)

    def _start(self, name: str, args: list[str]) -> None:
        with (self.folder / f"{name}.log").open("wb") as log:
            self._processes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def _containerd(self) -> None:
        cni = self.folder / "cni"
        cni.mkdir()
        ipam = {"type": "host-local", "ranges": [[{"subnet": self.subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}
        bridge = {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False, "ipam": ipam}
        (cni / "10-af-pods.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "af-pods", "plugins": [bridge]})
        )
        config = f"""\
version = 2
root = "{self.folder / "containerd-root"}"
state = "{self.folder / "containerd-state"}"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{self.snapshotter}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni}"
"""
        (self.folder / "containerd.toml").write_text(config)
        # The bridge with the host's address now, not at the first pod (the CNI plugin adopts it):
        # a service for the pods can listen on host_address before any pod runs.
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        for command in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{self.host_address}/{prefix}", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)
        self._start("containerd", [str(CONTAINERD), "--config", str(self.folder / "containerd.toml")])
        self._wait(lambda: self._ctr("version").returncode == 0, "containerd answers", "containerd")

    def _ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(CTR), "--address", str(self.socket), "-n", "k8s.io", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def import_image(self, archive: Path, name: str, timeout: float = 120, index_name: bool = True) -> None:
        """`index_name`: name the archive's index `name` (umoci's archives name no image); False for an
        archive whose manifest names itself (single_image_archive): two images of one name, the index
        and the manifest, raced in containerd and the name was sometimes left on the index's digest,
        which containerd had not kept ("content digest ... not found")."""
        naming = ["--index-name", name] if index_name else []
        imported = self._ctr(
            "images", "import", "--snapshotter", self.snapshotter, *naming, str(archive), timeout=timeout
        )
        assert imported.returncode == 0, imported.stderr

    def _kubelet(self) -> None:
        credential = self.plane.ca.issue("kubelet", f"system:node:{self.name}", org="system:nodes")
        kubeconfig = self.plane.kubeconfig("kubelet", credential)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.ca.cert_file)},
            },
            "authorization": {"mode": "AlwaysAllow"},  # its API answers only the CA's clients, on loopback
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": "127.0.0.1",
            "port": free_port_block(),
            "readOnlyPort": 0,
            "healthzPort": 0,
            "localStorageCapacityIsolation": False,
            # This shared disk and memory are not the kubelet's to guard: no evictions, no image GC.
            "evictionHard": {"memory.available": "0%", "nodefs.available": "0%", "imagefs.available": "0%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "resolvConf": "/etc/resolv.conf",
            "podLogsDir": str(self.pod_logs),  # not the host's /var/log/pods
        }
        (self.folder / "kubelet.yaml").write_text(yaml.safe_dump(config))
        self._start(
            "kubelet",
            [
                str(KUBELET),
                f"--config={self.folder / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={self.name}",
                f"--root-dir={self.folder / 'kubelet-root'}",
                f"--cert-dir={self.folder / 'kubelet-pki'}",
            ],
        )
        http = self.plane.session()

        def ready() -> bool:
            answer = http.get(f"{self.plane.url}/api/v1/nodes/{self.name}", timeout=10)
            if answer.status_code != 200:
                return False
            conditions = {c["type"]: c["status"] for c in answer.json()["status"].get("conditions", [])}
            return conditions.get("Ready") == "True"

        self._wait(ready, f"node {self.name} Ready", "kubelet", timeout=120)

    def _wait(self, check: Any, what: str, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            process = self._processes[name]
            if process.poll() is not None:
                raise AssertionError(f"{what}: {name} exited {process.returncode}\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.log_tail(name)}")
            time.sleep(0.5)

    def start(self) -> Kubelet:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._containerd()
        images = self.folder / "images"
        images.mkdir()
        self.import_image(build_image(images, "pause", ["/bin/sleep", "2147483647"]), PAUSE_IMAGE)
        self.import_image(build_image(images, "shell", ["/bin/sh"]), SHELL_IMAGE)
        self._kubelet()
        return self

    def stop(self) -> None:
        for name in ("kubelet", "containerd"):
            process = self._processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        # containerd's shims keep containers running after containerd stops: end those of ours.
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline and "containerd-shim" in cmdline[0] and str(self.socket) in " ".join(cmdline):
                with contextlib.suppress(psutil.Error):
                    for child in proc.children(recursive=True):
                        child.kill()
                    proc.kill()
        unmount_under(self.folder)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)


@contextlib.contextmanager
def kubelet(plane: ControlPlane, folder: Path, snapshotter: str = "native") -> Iterator[Kubelet]:
    running = Kubelet(plane, folder, snapshotter=snapshotter)
    try:
        yield running.start()
    finally:
        running.stop()
