"""AWS ECS: the executor (``executor.py``), its config and how ECS words a task it did not
start (``errors.py``); what it shares with Batch is in ``executors/aws/``."""
