"""The development commands `make` runs: the whole pipeline (`run.py`) and the project's own import contract.

No daemon imports this folder; it is not installed.
"""
