"""What AWS Batch and ECS share: clients with retry config and a rate budget, how AWS's
errors and failed containers are classified, one job per attempt, registered definitions
reused while unchanged, names and tags made from a launch, and reading CloudWatch Logs by
cursor."""
