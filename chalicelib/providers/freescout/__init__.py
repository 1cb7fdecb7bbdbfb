"""FreeScout: the API client and one inbound email delivered exactly once."""
