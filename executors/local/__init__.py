"""Local subprocesses on the worker's host: the executor (``executor.py``) and its config."""
