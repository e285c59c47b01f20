"""JupyterHub configuration of the facility and the spawner that maps a backend onto a real spawner."""
