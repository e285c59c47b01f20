"""Which dask-gateway backend class serves each facility.yaml backend kind."""

GATEWAY_BACKENDS = {
    "local": "dask_backends.local.FacilityLocalBackend",
    "slurm": "dask_backends.slurm.FacilitySlurmBackend",
    "htcondor": "dask_backends.htcondor.HTCondorBackend",
    "kubernetes": "dask_gateway_server.backends.kubernetes.KubeBackend",
}

# Kinds whose gateway `af up` can run on this host; Kubernetes gateways run in the cluster (helm/).
HOST_KINDS = ("local", "slurm", "htcondor")


def backend_class_for(kind: str) -> str:
    return GATEWAY_BACKENDS[kind]
