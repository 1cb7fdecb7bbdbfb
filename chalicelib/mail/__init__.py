"""Mail: the models and decisions of mailroom, knowing no provider's payload shape.

Layer rule: ``mail`` imports only ``platform`` (and itself); ``providers`` and ``handlers``
import ``mail``, never the other way round.
"""

# The Postmark metadata field carrying mailroom's correlation id; here, not in ``outbound``,
# so the events webhook does not build the whole outbound model at cold start for one name.
CORRELATION_KEY = "correlation_id"
