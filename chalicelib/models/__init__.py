"""Pydantic models of every payload at mailroom's edges, one module per source."""
