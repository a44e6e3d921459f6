"""What AWS Batch and ECS share: clients with retry config and a rate budget, how AWS's
errors are classified, and reading CloudWatch Logs by cursor."""
