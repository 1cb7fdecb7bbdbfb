"""Platform: the Lambda and SQS machinery, knowing nothing of mail.

Settings, errors, logging and metrics, the batch runner, idempotency, claim checks, secrets,
signatures and the AWS session. Layer rule: ``platform`` imports no other chalicelib layer.
"""
