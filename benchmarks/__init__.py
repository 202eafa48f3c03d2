"""The benchmark suite: seeded data, a stage breakdown, the service end to end, its floor and its peers.

Run it with `make bench` or `python -m benchmarks --help`; benchmarks/README.md explains every figure.
"""
