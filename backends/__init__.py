"""Backend kinds (local, Slurm, HTCondor, Kubernetes): one package each, listed in backends.registry."""
