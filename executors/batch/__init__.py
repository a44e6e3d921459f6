"""AWS Batch: the executor (``executor.py``), its config and how Batch words failures."""
