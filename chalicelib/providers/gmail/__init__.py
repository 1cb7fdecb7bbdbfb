"""Gmail: the API client (googleapiclient loads only inside the calls that need it)."""
