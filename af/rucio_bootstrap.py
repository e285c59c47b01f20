"""Build the Rucio server's database once: tables, the base VO and the root account.

Run by `af up` (af.rucio_server.bootstrap) with the Rucio server's own Python, not the facility's
(its venv has the server package `rucio`; the facility has only rucio-clients), and $RUCIO_CONFIG
naming the facility's rucio.cfg, whose [bootstrap] section holds root's userpass identity.
Standalone: it imports nothing of the facility.
"""

from __future__ import annotations

import sys


def main() -> None:
    from rucio.db.sqla.util import build_database, create_base_vo, create_root_account

    build_database()  # the tables, and alembic's version stamp
    create_base_vo()  # without it every request fails with "VO def not found"
    create_root_account()  # root, with the userpass identity of [bootstrap]
    print("rucio database built: tables, base VO, root account", file=sys.stderr)


if __name__ == "__main__":
    main()
