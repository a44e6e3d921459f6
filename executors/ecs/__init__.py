"""AWS ECS: its config schema today; the executor comes with issue 6."""
