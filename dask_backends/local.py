"""Local backend: Dask schedulers and workers as processes on the facility host.

dask-gateway's UnsafeLocalBackend runs them as the gateway's own user, which is what the
embedded, single-host facility wants; a shared production host uses a batch or cloud backend.
"""

from dask_gateway_server.backends.local import UnsafeLocalBackend


class FacilityLocalBackend(UnsafeLocalBackend):
    """UnsafeLocalBackend configured from facility.yaml by dask_backends.gateway_config."""
