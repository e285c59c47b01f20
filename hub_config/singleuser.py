"""`af-singleuser`, the notebook server command on the facility host: jupyterhub-singleuser, lighter.

jupyter-server imports jsonschema (through jupyter-events), and jsonschema's format checkers import
rfc3987-syntax when it is installed, which compiles an Earley grammar for the "iri" format at
import: about 2 s of CPU in every notebook server, most of a server's start-up, for a format the
server never checks. With 30 servers starting on 2 cores that is a minute of CPU (issue 15).
Blocking that one import makes jsonschema skip the "iri" checker (it treats the import as
optional); everything else is the stock jupyterhub-singleuser.
"""

from __future__ import annotations

import sys

# None in sys.modules makes `import rfc3987_syntax` raise ImportError, which jsonschema expects.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def main() -> int | None:
    """The stock jupyterhub-singleuser, with the import above blocked (the `af-singleuser` script)."""
    from jupyterhub.singleuser import main as singleuser_main

    return singleuser_main()


if __name__ == "__main__":
    sys.exit(main())
