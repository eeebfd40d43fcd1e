"""What every stage runs on: the machine, device and precision, outputs written atomically,
provenance, the run folder's layout."""
