"""Malformed values are refused before anything runs, as one line with exit code 2; output cut
short by a closed pipe ends quietly."""

from __future__ import annotations

import os
import sys

import pytest
from click.testing import CliRunner

from mailroom_cli import main as entry
from mailroom_cli.dlq import dlq
from mailroom_cli.main import cli


@pytest.mark.parametrize(
    "args",
    [
        ["suppression", "add", "not an address", "--reason", "x"],
        ["suppression", "add", "ann@", "--reason", "x"],
        ["suppression", "check", "ann@example"],
        ["suppression", "remove", "ann@example.com, bob@example.com", "--reason", "x"],
        ["routes", "test", "two@@example.com"],
        ["trace", "has space"],
        ["trace", "pm-1", "--recipient", "nobody"],
        ["trace", "pm-1", "--since", "-3"],
        ["dlq", "peek", "nowhere"],
        ["dlq", "peek", "-n", "0"],
        ["dlq", "analyze", "inbound-ish"],
        ["dlq", "redrive", "--rate", "0"],
        ["dlq", "redrive", "--rate", "nan"],
        ["dlq", "redrive", "--rate", "inf"],
        ["dlq", "redrive", "--rate", "ten"],
        ["dlq", "redrive", "--id", ""],
        ["dlq", "discard", "--id", "a\tb", "--reason", "x"],
        ["dlq", "quarantine", "--id", "x" * 600, "--reason", "x"],
        ["stop", "everything", "--reason", "x"],
        ["resume", "out"],
        ["probe", "--timeout", "0"],
        ["audit", "list", "--days", "0"],
    ],
    ids=lambda args: " ".join(a[:20] for a in args),
)
def test_a_malformed_value_is_refused_in_one_line_with_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--stage", "test", *args])

    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: ")


def test_well_formed_values_pass_the_checks() -> None:
    from mailroom_cli import params

    assert params.ADDRESS.convert(" Ann.Lee+tag@Example.co.uk ", None, None) == (
        "ann.lee+tag@example.co.uk"
    )
    assert params.ADDRESS.convert("Ann <ann@Example.com>", None, None) == "ann@example.com"
    assert params.MESSAGE_ID.convert("<abc.123@mail.example.com>", None, None)
    assert params.RATE.convert("2.5", None, None) == 2.5
    assert params.PIPELINE.convert("ses-inbound", None, None) == "ses-inbound"


def test_output_into_a_closed_pipe_ends_quietly(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) is gone before we write
    closed = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", closed)
    # A subcommand's output, written while the group runs it (more than a pipe holds).
    monkeypatch.setattr(sys, "argv", ["mailroom", "dlq", "--help"])
    monkeypatch.setattr(dlq, "get_help", lambda ctx: "line\n" * 20_000)

    with pytest.raises(SystemExit) as stopped:
        entry.main()
    closed.close()  # stdout now points at devnull: closing flushes without a second error

    assert stopped.value.code == 1
    assert "BrokenPipeError" not in capfd.readouterr().err
