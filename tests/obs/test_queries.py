"""Every field a saved Logs Insights query reads is one our logger writes."""

from __future__ import annotations

import re

import pytest

from chalicelib.platform.logging import LOGGED_FIELDS
from mailroom_local.provision import load_template

# Logs Insights commands, operators and functions: https://docs.aws.amazon.com/AmazonCloudWatch/
# latest/logs/CWL_QuerySyntax.html (only those our queries may use).
KEYWORDS = {
    "fields", "filter", "stats", "sort", "limit", "display", "parse", "dedup", "by", "as",
    "asc", "desc", "and", "or", "not", "in", "like", "count", "count_distinct", "avg", "sum",
    "min", "max", "pct", "latest", "earliest", "ispresent", "isempty", "bin", "strlen",
    "tolower", "toupper", "concat",
}  # fmt: skip
QUERIES = {
    logical: spec["Properties"]["QueryString"]
    for logical, spec in load_template()["Resources"].items()
    if spec["Type"] == "AWS::Logs::QueryDefinition"
}


def query_fields(query: str) -> set[str]:
    """The log fields ``query`` reads: identifiers that are no keyword, alias or literal."""
    without_strings = re.sub(r'"[^"]*"|\'[^\']*\'', " ", query)
    aliases = set(re.findall(r"\bas\s+([A-Za-z_][A-Za-z0-9_]*)", without_strings))
    names = re.findall(r"@?[A-Za-z_][A-Za-z0-9_.]*", without_strings)
    return {
        n for n in names if n.lower() not in KEYWORDS and n not in aliases and not n.startswith("@")
    }


def test_the_five_saved_queries_exist() -> None:
    names = {
        spec["Properties"]["Name"]["Fn::Sub"].split("/")[-1]
        for spec in load_template()["Resources"].values()
        if spec["Type"] == "AWS::Logs::QueryDefinition"
    }
    assert names == {
        "trace-by-message-id-hash",
        "dlq-investigation",
        "routing-decisions",
        "failures-by-error-class",
        "slowest-handlers",
    }


@pytest.mark.parametrize("logical", sorted(QUERIES))
def test_query_reads_only_fields_the_logger_writes(logical: str) -> None:
    fields = query_fields(QUERIES[logical])

    assert fields, "no field extracted: the extractor is broken"
    assert fields <= LOGGED_FIELDS, sorted(fields - LOGGED_FIELDS)


def test_the_extractor_catches_a_field_the_logger_never_writes() -> None:
    query = 'fields @timestamp, messageId | filter level = "ERROR" | stats count(*) as n by lambda'

    assert query_fields(query) == {"messageId", "level", "lambda"}
    assert not query_fields(query) <= LOGGED_FIELDS


def test_queries_filter_on_messages_the_code_writes() -> None:
    from pathlib import Path

    source = "\n".join(
        p.read_text() for p in (Path(__file__).resolve().parents[2] / "chalicelib").rglob("*.py")
    )
    for query in QUERIES.values():
        for message in re.findall(r'message = "([^"]+)"', query):
            assert f'"{message}"' in source, message
