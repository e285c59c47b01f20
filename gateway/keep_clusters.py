"""Clusters outlive a restart or crash of their gateway; only `af down` stops them.

dask-gateway's database backends reload every active cluster from the database at start-up
(`DBBackendBase.setup`: the clusters go back into the reconcile queue, their routes are added to
the new proxy and their schedulers' heartbeats resume). With `stop_clusters_on_shutdown = False`
a graceful stop leaves them running; this mixin decides at shutdown instead of at start-up, so
the stop of `af down` (which writes runtime.json's `stopping_file` first) still ends them.
"""

from __future__ import annotations

from pathlib import Path

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from backends.common.mixed_in import mixed_in


class StopOnlyWhenFacilityStopsMixin(LoggingConfigurable):
    stopping_file = Unicode(
        "", config=True, help="Present when `af down` stops the facility: then clusters are stopped too."
    )

    async def cleanup(self) -> None:
        stopping = bool(self.stopping_file) and Path(self.stopping_file).exists()
        self.stop_clusters_on_shutdown = stopping
        self.log.info("Gateway stops: %s", "stopping its clusters (af down)" if stopping else "clusters keep running")
        await super().cleanup()


def keeping_clusters(backend_class: str | type) -> type:
    """`backend_class` with StopOnlyWhenFacilityStopsMixin in front, under the same name."""
    return mixed_in(StopOnlyWhenFacilityStopsMixin, backend_class)
