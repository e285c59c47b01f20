"""The HTCondor dialect: every submit description this project hands to condor_submit.

One renderer per role:
- notebook server (batchspawner): ``render_notebook_submit``, templates/htcondor_notebook.sub.j2
- Dask scheduler and Dask worker (dask-gateway): ``dask_job_submit``
- `af run` papermill job: ``run_job_submit``

The submit language ends a command at the line end and expands $(...) macros, so every value
passes ``submit_value`` (no line break, no `$(`), strings in ClassAd expressions are written
with ``classad_string``, commands with ``condor_arguments``, and the environment travels by
name (``getenv_names``), never by value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

# HTCondor JobStatus codes: which count as "the job may still run".
JOB_STATUS = {
    1: "idle",
    2: "running",
    3: "removed",
    4: "completed",
    5: "held",
    6: "transferring output",
    7: "suspended",
}
LIVE_STATES = {1, 2, 6, 7}
LITERAL_DOLLAR = "$(DOLLAR)"
_JOB_ID = re.compile(r"^\d+\.\d+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The job records papermill's exit status itself: HTCondor's own ExitCode is gone from condor_q
# once the job leaves the queue, and condor_history may be disabled at a site.
EXIT_RECORDER = 'status=0; "$@" || status=$?; echo "$status" > exit_code; exit "$status"'


class SubmitValueError(ValueError):
    """A value that would change the meaning of a submit description."""


def submit_value(value: Any) -> str:
    """A value for the right side of `key = value` in a submit description: no line break, no `$(`."""
    text = str(value)
    if any(ch in text for ch in "\r\n\0") or "$(" in text.replace(LITERAL_DOLLAR, ""):
        raise SubmitValueError(f"{text!r} cannot go into an HTCondor submit description")
    return text


def classad_string(value: Any) -> str:
    """A ClassAd string literal ("..." with \\ and " escaped), for +Attribute and expressions."""
    text = submit_value(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def condor_arguments(argv: Sequence[str]) -> str:
    """The `arguments` value in HTCondor's quoted syntax: each argument in single quotes,
    with ' doubled, " doubled and $ written as $(DOLLAR), the whole list in double quotes."""
    parts = []
    for arg in argv:
        if any(ch in str(arg) for ch in "\r\n\0"):
            raise SubmitValueError(f"{arg!r} cannot be a job argument (line break or NUL)")
        # $ starts a macro in the submit language; $(DOLLAR) is HTCondor's literal $.
        text = str(arg).replace("$", LITERAL_DOLLAR)
        parts.append("'" + text.replace("'", "''").replace('"', '""') + "'")
    return '"' + " ".join(parts) + '"'


def getenv_names(environment: Mapping[str, str]) -> str:
    """`getenv` value listing the variables a job takes from condor_submit's own environment.

    Values never enter the submit description, so they need no quoting; the names must be plain.
    """
    for name in environment:
        if not _ENV_NAME.match(name):
            raise SubmitValueError(f"{name!r} is not a valid environment variable name")
    return ", ".join(sorted(environment)) or "false"


def parse_submit_output(stdout: str) -> str:
    """The job id (cluster.proc) from `condor_submit -terse` output such as `12.0 - 12.0`."""
    first = stdout.strip().split(" - ")[0].strip() if stdout.strip() else ""
    if not _JOB_ID.match(first):
        raise ValueError(f"condor_submit printed no job id: {stdout.strip()!r}")
    return first


def parse_states(stdout: str) -> dict[str, int]:
    """job id -> JobStatus from `condor_q -af:j JobStatus` lines such as `12.0 2`."""
    states = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and _JOB_ID.match(fields[0]) and fields[1].isdigit():
            states[fields[0]] = int(fields[1])
    return states


def checked_job_id(job_id: str) -> str:
    if not _JOB_ID.match(str(job_id)):
        raise ValueError(f"{job_id!r} is not an HTCondor job id")
    return str(job_id)


# Submit language, not HTML: every expression's value is finalized through submit_value.
_templates = Environment(  # noqa: S701
    loader=PackageLoader("backends.htcondor", "templates"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    finalize=submit_value,
)


def render_notebook_submit(values: dict[str, Any]) -> str:
    """The submit description of a notebook server."""
    return _templates.get_template("htcondor_notebook.sub.j2").render(**values)


def _vanilla_job(argv: Sequence[str], env: Mapping[str, str], job_dir: str, log: str, cores: int) -> dict[str, str]:
    """The lines every Dask and `af run` job has: a vanilla job on the shared file system."""
    return {
        "universe": "vanilla",
        "executable": argv[0],
        "arguments": condor_arguments(argv[1:]),
        "transfer_executable": "false",
        "should_transfer_files": "NO",
        "getenv": getenv_names(env),
        "initialdir": job_dir,
        "output": log,
        "error": log,
        "request_cpus": str(cores),
    }


def _description(lines: Mapping[str, Any], extra: str = "") -> str:
    body = "\n".join(f"{key} = {submit_value(value)}" for key, value in lines.items())
    if extra:
        body += "\n" + extra
    return body + "\nqueue\n"


def dask_job_submit(
    argv: Sequence[str],
    env: Mapping[str, str],
    staging_dir: str,
    log: str,
    cores: int,
    memory_bytes: int,
    cluster_name: str,
    role: str,
    policy: Mapping[str, str],
    extra_lines: str = "",
) -> str:
    """The submit description of a Dask scheduler (role "scheduler") or worker ("worker") job."""
    lines = {
        **_vanilla_job(argv, env, staging_dir, log, max(1, int(cores))),
        "request_memory": f"{max(1, -(-int(memory_bytes) // 2**20))}M",
        "+DaskGatewayCluster": classad_string(cluster_name),
        "+DaskGatewayRole": classad_string(role),
        **policy,
    }
    return _description(lines, extra_lines)


def run_job_submit(
    argv: Sequence[str],
    env: Mapping[str, str],
    job_dir: str,
    cores: int,
    memory_gb: int,
    accounting_group: str,
    walltime_hours: int,
    tag: str,
) -> str:
    """The submit description of one `af run` papermill job, which records its exit status."""
    wrapped = ["/bin/sh", "-c", EXIT_RECORDER, "af-run", *argv]
    lines = {
        **_vanilla_job(wrapped, env, job_dir, f"{job_dir}/job.log", cores),
        "request_memory": f"{memory_gb * 1024}M",
        "+AfRun": classad_string(tag),
    }
    if accounting_group:
        lines["accounting_group"] = accounting_group
    if walltime_hours:
        lines["periodic_remove"] = f"JobStatus == 2 && time() - EnteredCurrentStatus > {walltime_hours * 3600}"
    return _description(lines)
