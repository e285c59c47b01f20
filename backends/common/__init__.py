"""What the kinds share: job commands, batch spawner mixins, the jobqueue launcher, cluster options."""
