"""Pydantic models of every payload at mailroom's edges, one module per source."""

# The Postmark metadata field carrying mailroom's correlation id; here, not in ``outbound``,
# so the events webhook does not build the whole outbound model at cold start for one name.
CORRELATION_KEY = "correlation_id"
