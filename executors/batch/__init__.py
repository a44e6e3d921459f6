"""AWS Batch: its config schema today; the executor comes with issue 6."""
