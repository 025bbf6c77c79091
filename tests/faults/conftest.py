"""Fault-injection tests: kills, concurrent sweeps, disk full, corrupt and foreign files."""
