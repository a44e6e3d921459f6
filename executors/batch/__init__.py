"""AWS Batch: the executor (``executor.py``) and its config; what it shares with ECS is in
``executors/aws/``."""
