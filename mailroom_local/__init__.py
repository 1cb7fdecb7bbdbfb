"""The local stack: an embedded AWS (moto), stand-ins for the services, and Lambda's rules."""
