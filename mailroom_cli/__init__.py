"""``mailroom``: the operator CLI, one command per step of the dead-letter runbooks.

Not deployed to Lambda; it reuses chalicelib's settings, stores and models.
"""
