"""Benchmarks of the scale goals: each prints the project's figure beside a reference measured in
the same run on the same database, and their ratio (`python -m benchmarks --help`)."""
