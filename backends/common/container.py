"""The command a batch job (notebook server, Dask scheduler or worker, papermill run) executes.

Shared by the Slurm and HTCondor kinds: where the backend runs jobs in a container
(`container_runtime: apptainer`) and the image has a CVMFS path, the command runs as
`apptainer exec <cvmfs path> ...`; otherwise it runs in the configured environment
(`site.environment`, a Python environment prefix, or whatever is on the job's PATH).

`bubblewrap_argv` runs a command from the same unpacked tree with bubblewrap (`bwrap`), which works
on machines without Apptainer (this project's test machines): the tree read-only as /, /proc,
/dev, /sys read-only, /tmp, the home and the data the job needs bound, the image's ENV applied as
Apptainer applies it (the tree's .singularity.d/env file, written by images/publish.py), the rest
of the caller's environment cleared unless passed. The account that runs it finds itself in the
image's /etc/passwd and /etc/group (generated where the job runs, as Apptainer does), and a job's
$HOME is bound. Slurm and HTCondor jobs use it with `container_runtime: bubblewrap`.

Every argument stays a separate argv item (quoted with shlex where a shell reads it), so nothing
from a user or a form reaches the shell unquoted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from backends.common.settings import BatchSettings
from facility import cvmfs
from facility.model import Backend, Facility, Image


def image_path(fac: Facility, image: Image) -> str:
    """Where the unpacked image lives on CVMFS (facility.cvmfs); not checked here: the batch
    nodes mount CVMFS, the hub host need not."""
    return str(cvmfs.image_path(fac, image, check=False))


# A container job's notebook server: the image's own af-singleuser (images/Containerfile installs
# the project), which loads the facility's server extensions (busy kernels, the examples pull).
IMAGE_SERVER_COMMAND = ("af-singleuser",)


CONTAINER_RUNTIMES = ("apptainer", "bubblewrap")


def uses_container(backend: Backend) -> bool:
    return backend.container_runtime in CONTAINER_RUNTIMES


@dataclass(frozen=True)
class JobWrapping:
    """How a job's command is wrapped: a prefix (the container runtime) or a program folder (the
    environment). Plain data, so a spawner can keep it in the hub's database."""

    prefix: tuple[str, ...] = ()
    program_dir: str = ""

    def apply(self, argv: Sequence[str]) -> list[str]:
        if not argv:
            raise ValueError("a job needs a command")
        first, *rest = map(str, argv)
        if self.program_dir and "/" not in first:
            first = os.path.join(self.program_dir, first)
        return [*self.prefix, first, *rest]


def job_wrapping(
    fac: Facility, backend: Backend, image: Image, settings: BatchSettings, gpus: int = 0, environment: str = ""
) -> JobWrapping:
    """The wrapping of jobs on this backend with this image.

    site keys read: `apptainer` (the runtime's program), `apptainer_binds` (host paths bound into
    the container), and without a container `environment` (or the kind's default `environment`
    given here): its bin/ programs are called by full path.

    With `container_runtime: bubblewrap` (program: site key `bubblewrap`) the tree must be readable
    where the wrapping is made (this machine kind: hub and jobs on one host); the job keeps its
    environment, as under Apptainer, and GPUs are not bound (no equivalent of --nv yet).
    """
    if backend.container_runtime == "bubblewrap":
        if gpus:
            raise ValueError(f"backend {backend.name!r}: container_runtime bubblewrap cannot bind GPUs yet")
        tree = cvmfs.image_path(fac, image, check=True).resolve()  # this build, even if the reference moves
        argv = bubblewrap_argv(
            tree, [], binds=settings.apptainer_binds, keep_env=True, bind_home=True, bwrap=settings.bubblewrap
        )
        return JobWrapping(prefix=tuple(argv))
    if uses_container(backend):
        command = [settings.apptainer, "exec"]
        if gpus:
            command.append("--nv")  # binds the host's NVIDIA driver and devices
        for bind in settings.apptainer_binds:
            command += ["--bind", str(bind)]
        return JobWrapping(prefix=(*command, image_path(fac, image)))
    environment = settings.environment or environment
    return JobWrapping(program_dir=os.path.join(environment, "bin") if environment else "")


BWRAP = "bwrap"
# Written into every published tree by images/publish.py (DUCC writes the same file).
IMAGE_ENV_FILE = "/.singularity.d/env/10-docker2singularity.sh"
# Host files a process needs to reach other hosts by name (Apptainer binds them too).
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")
# The host's /tmp is the process's /tmp (sockets and scratch files shared, as with Apptainer).
HOST_TMP = "/tmp"  # noqa: S108 - bound, not written to


def _underlay(tree: Path, destination: str, done: set[str]) -> list[str]:
    """Mounts that make `destination` creatable in the read-only tree: its deepest ancestor present
    in the image becomes a tmpfs holding that ancestor's entries again (bound from the tree), so a
    home such as /root/.local/state/... can be bound while /root keeps the image's files.
    (LAUNCHER does the same at run time for $HOME.)"""
    parts = Path(destination).parts[1:]
    ancestor = Path("/")
    for part in parts[:-1]:
        inside = tree / ancestor.relative_to("/") / part
        if inside.is_symlink() or not inside.is_dir():
            break
        ancestor = ancestor / part
    if (tree / destination.lstrip("/")).is_dir() or str(ancestor) in done:
        return []
    done.add(str(ancestor))
    argv = ["--tmpfs", str(ancestor)]
    source = tree / ancestor.relative_to("/")
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        inside = str(ancestor / entry.name)
        if entry.is_symlink():
            argv += ["--symlink", os.readlink(entry.path), inside]
        else:
            argv += ["--ro-bind", entry.path, inside]
    return argv


# Runs on the node, as the job's account, just before bwrap: what is known only there.
# - /etc/passwd and /etc/group: the image's, with the account's own entries (from the node's
#   getent) in place of any entry of the same name or id, bound read-only from memory
#   (--ro-bind-data, read from files removed before bwrap starts), as Apptainer does
#   ("config passwd/group"): getpass.getuser(), pwd and ~ work.
# - $HOME, when asked (job_wrapping): bound read-write at its own path, as Apptainer binds it; a
#   home the image lacks gets the same underlay _underlay makes (unless a bind made one already).
# Positional parameters: tree, bind-home flag, ancestors already underlaid (":"-separated), the
# number of bwrap words, the bwrap words, then the command. The bwrap words are rotated behind the
# command so that words can be appended to them, then the command is rotated back behind "--".
# One line (each piece ends in ";" or a keyword): HTCondor's job arguments cannot hold a line break.
LAUNCHER = " ".join(
    (
        "tree=$1 bind_home=$2 underlaid=$3 count=$4;",
        "shift 4;",
        'i=0; while [ "$i" -lt "$count" ]; do set -- "$@" "$1"; shift; i=$((i + 1)); done;',
        "rest=$(($# - count));",
        "uid=$(id -u); gid=$(id -g);",
        'me=$(getent passwd "$uid") || me="$(id -un 2>/dev/null || echo "user$uid"):x:$uid:$gid::${HOME:-/}:/bin/sh";',
        "name=${me%%:*};",
        '[ -x "$tree${me##*:}" ] || me="${me%:*}:/bin/sh";',
        "mine=;",
        "for g in $(id -G); do",
        'line=$(getent group "$g") || line="group$g:x:$g:";',
        'mine="$mine ${line%%:*}:$g";',
        "done;",
        'others=\'index(ids, " " $3 " ") == 0 && index(names, " " $1 " ") == 0\';',
        "files=$(mktemp -d);",
        'awk -F: -v n="$name" -v u="$uid" \'$1 != n && $3 != u\' "$tree/etc/passwd" > "$files/passwd";',
        'printf \'%s\\n\' "$me" >> "$files/passwd";',
        'names="$(for pair in $mine; do printf \' %s\' "${pair%:*}"; done) ";',
        'awk -F: -v ids=" $(id -G) " -v names="$names" "$others" "$tree/etc/group" > "$files/group";',
        'for pair in $mine; do printf \'%s:x:%s:%s\\n\' "${pair%:*}" "${pair##*:}" "$name"; done >> "$files/group";',
        'exec 8< "$files/passwd" 9< "$files/group";',
        'rm -r "$files";',
        'set -- "$@" --ro-bind-data 8 /etc/passwd --ro-bind-data 9 /etc/group;',
        'if [ "$bind_home" = 1 ] && [ -n "${HOME:-}" ] && [ "$HOME" != / ] && [ -d "$HOME" ]; then',
        "case $HOME in /tmp | /tmp/*) ;; *)",
        'if [ ! -d "$tree$HOME" ]; then',
        "ancestor= last=${HOME##*/};",
        "old_ifs=$IFS; IFS=/; set -f;",
        "for part in ${HOME#/}; do",
        '[ "$part" = "$last" ] && break;',
        '[ -d "$tree$ancestor/$part" ] && [ ! -L "$tree$ancestor/$part" ] || break;',
        "ancestor=$ancestor/$part;",
        "done;",
        "IFS=$old_ifs; set +f;",
        'case ":$underlaid:" in *":${ancestor:-/}:"*) ;; *)',
        'set -- "$@" --tmpfs "${ancestor:-/}";',
        'for entry in "$tree$ancestor"/* "$tree$ancestor"/.[!.]*; do',
        '[ -e "$entry" ] || [ -L "$entry" ] || continue;',
        'if [ -L "$entry" ]; then set -- "$@" --symlink "$(readlink "$entry")" "$ancestor/${entry##*/}";',
        'else set -- "$@" --ro-bind "$entry" "$ancestor/${entry##*/}"; fi;',
        "done;;",
        "esac;",
        "fi;",
        'set -- "$@" --bind "$HOME" "$HOME";;',
        "esac;",
        "fi;",
        'set -- "$@" --;',
        'i=0; while [ "$i" -lt "$rest" ]; do set -- "$@" "$1"; shift; i=$((i + 1)); done;',
        'exec "$@"',
    )
)


def bubblewrap_argv(
    tree: str | Path,
    command: Sequence[str],
    *,
    home: str | Path | None = None,
    binds: Sequence[str | Path] = (),
    ro_binds: Sequence[str | Path] = (),
    env: Mapping[str, str] | None = None,
    workdir: str | Path | None = None,
    keep_env: bool = False,
    bind_home: bool = False,
    bwrap: str = BWRAP,
) -> list[str]:
    """The argv that runs `command` inside the unpacked image `tree` with bubblewrap.

    `home` and `binds` are bound read-write at the same path, `ro_binds` read-only; /tmp is the
    host's (sockets and scratch files shared with the host, as Apptainer does). The process gets
    only `env` (plus HOME; with keep_env, the caller's whole environment too) and then the image's
    own ENV, which wins over both, as in Apptainer. With `bind_home`, the $HOME the command starts
    with is bound (for jobs, whose home is known only where they run). The account running the
    argv sees itself in the image's /etc/passwd and /etc/group (LAUNCHER).
    """
    tree = Path(tree)
    if not (tree / "usr").is_dir():
        raise FileNotFoundError(f"{tree} is not an unpacked image (no usr/ in it)")
    writable = [*([home] if home else []), *binds]
    argv = [bwrap, "--die-with-parent", "--ro-bind", str(tree), "/"]
    done: set[str] = set()
    for path in [*writable, *ro_binds]:
        if not os.path.isabs(path):
            raise ValueError(f"bind {path!r}: give an absolute path")
        if not Path(path).is_relative_to(HOST_TMP):  # the host's /tmp is bound below
            argv += _underlay(tree, str(path), done)
    argv += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys", "--bind", HOST_TMP, HOST_TMP]
    for host_file in HOST_FILES:
        if os.path.exists(host_file):
            argv += ["--ro-bind", host_file, host_file]
    for path in writable:
        argv += ["--bind", str(path), str(path)]
    for path in ro_binds:
        argv += ["--ro-bind", str(path), str(path)]
    if not keep_env:
        argv.append("--clearenv")
    environment = {**(env or {}), **({"HOME": str(home)} if home else {})}
    for name, value in environment.items():
        argv += ["--setenv", name, value]
    chdir = workdir or home
    if chdir:
        argv += ["--chdir", str(chdir)]
    launch = ["/bin/sh", "-c", LAUNCHER, "af-bwrap", str(tree), "1" if bind_home else "0", ":".join(sorted(done))]
    # Apply the image's ENV inside, as Apptainer does, then exec the command itself.
    script = f'[ -r {IMAGE_ENV_FILE} ] && . {IMAGE_ENV_FILE}; exec "$@"'
    inside = ["/bin/sh", "-c", script, "af-image", *map(str, command)]
    return [*launch, str(len(argv)), *argv, *inside]
