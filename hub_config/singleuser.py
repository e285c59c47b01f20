"""`af-singleuser`, the notebook server command on the facility host: jupyterhub-singleuser, lighter.

jupyter-server imports jsonschema (through jupyter-events), and jsonschema's format checkers import
rfc3987-syntax when it is installed, which compiles an Earley grammar for the "iri" format at
import: about 2 s of CPU in every notebook server, most of a server's start-up, for a format the
server never checks. With 30 servers starting on 2 cores that is a minute of CPU (issue 15).
Blocking that one import makes jsonschema skip the "iri" checker (it treats the import as
optional). It also loads hub_config.busy_kernels, so a kernel running a cell keeps the server from
being culled as idle, and hub_config.examples_pull, which pulls the facility's examples into
~/examples before the server answers, and has jupyter-resource-usage show CPU besides memory.

JupyterLab's build check is off (jupyter_config/labconfig/page_config.json, on $JUPYTER_CONFIG_PATH):
at every page load it asked the server whether the installed extensions need a rebuild, 3.4-4.2 s
of server CPU on this machine kind, for a rebuild no user of a shared installation can do. So are
its news feed and update check, which fetch from jupyter.org and PyPI: a participant of a workshop
should not be asked about Jupyter's news, and an air-gapped site waits for their timeouts.
Everything else is the stock jupyterhub-singleuser.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

# None in sys.modules makes `import rfc3987_syntax` raise ImportError, which jsonschema expects.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


# Before the command's own arguments, which may override them; extensions enabled in config files stay.
EXTRA_ARGUMENTS = (
    "--ServerApp.jpserver_extensions=hub_config.busy_kernels=True",
    "--ServerApp.jpserver_extensions=hub_config.examples_pull=True",  # when the hub asks for it
    "--ResourceUseDisplay.track_cpu_percent=True",  # against CPU_LIMIT, the form's cores
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)
# Jupyter's configuration folder of the facility, searched besides the user's own.
JUPYTER_CONFIG = Path(__file__).with_name("jupyter_config")


def with_facility_config(environ: Mapping[str, str]) -> str:
    """$JUPYTER_CONFIG_PATH with the facility's folder added to the folders Jupyter searches."""
    paths = [p for p in environ.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    return os.pathsep.join([*paths, str(JUPYTER_CONFIG)] if str(JUPYTER_CONFIG) not in paths else paths)


def cpu_limit_arguments(environ: Mapping[str, str]) -> tuple[str, ...]:
    """jupyter-resource-usage's CPU limit in percent, from JupyterHub's $CPU_LIMIT in cores.

    It compares the server's CPU use in percent (100 per busy core) with its cpu_limit, which it
    reads from $CPU_LIMIT unchanged: with 1 core the limit was 1, and the status bar turned red as a
    warning at 1 % of CPU use. In percent, the warning means 90 % of the server's cores again."""
    try:
        cores = float(environ.get("CPU_LIMIT", ""))
    except ValueError:
        return ()
    return (f"--ResourceUseDisplay.cpu_limit={cores * 100:g}",) if cores > 0 else ()


def main() -> int | None:
    """The stock jupyterhub-singleuser, with the import above blocked (the `af-singleuser` script)."""
    from jupyterhub.singleuser import main as singleuser_main

    sys.argv[1:1] = [*EXTRA_ARGUMENTS, *cpu_limit_arguments(os.environ)]
    os.environ["JUPYTER_CONFIG_PATH"] = with_facility_config(os.environ)
    return singleuser_main()


if __name__ == "__main__":
    sys.exit(main())
