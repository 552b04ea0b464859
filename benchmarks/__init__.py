"""Loopback benchmarks of forker against its peers: `python -m benchmarks --help`."""
