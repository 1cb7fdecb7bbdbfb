"""The ``mailroom`` group: builds one Context for the stage and turns failures into one line.

Exit codes: 0 ok, 1 a finding (unhealthy, not found), 2 usage or configuration error. A
usage error is one line too; output cut short by a closed pipe (``mailroom … | head``) ends
quietly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from mailroom_cli.console import ConfigError
from mailroom_cli.context import DEFAULT_STATE_DIR, Context, Target, aws_target, local_target


class MailroomGroup(click.Group):
    """A group whose AWS and configuration failures end as one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        from chalicelib.platform.errors import ConfigurationError

        try:
            return super().invoke(ctx)
        except ClientError as err:
            error = err.response.get("Error", {})
            operation = getattr(err, "operation_name", "call")
            raise ConfigError(
                f"AWS refused {operation}: {error.get('Code', '?')}: {error.get('Message', '')}"
            ) from None
        except BotoCoreError as err:
            raise ConfigError(f"AWS: {err}") from None
        except ConfigurationError as err:
            raise ConfigError(str(err)) from None
        except click.UsageError as err:
            # click would print the usage and a hint around it; the operator gets one line.
            raise ConfigError(err.format_message()) from None
        except BrokenPipeError:
            raise  # the reader went away (| head): main() ends quietly
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            if os.environ.get("MAILROOM_DEBUG"):
                raise
            raise ConfigError(
                f"unexpected {type(err).__name__}: {err} (MAILROOM_DEBUG=1 shows the traceback)"
            ) from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mailroom")
    except PackageNotFoundError:
        return "(not installed: run `make install`)"


@click.group(cls=MailroomGroup)
@click.option("--stage", envvar="MAILROOM_STAGE", help="Stage in AWS (default credential chain).")
@click.option("--local", "use_local", is_flag=True, help="The local stack (make run).")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the local stack wrote local.json.",
)
@click.option("--region", help="AWS region (default: AWS_REGION).")
@click.option("--json", "as_json", is_flag=True, help="JSON output for scripts.")
@click.version_option(version=_version(), message="mailroom %(version)s")
@click.pass_context
def cli(
    click_ctx: click.Context,
    stage: str | None,
    use_local: bool,
    state_dir: Path,
    region: str | None,
    as_json: bool,
) -> None:
    """Operate a mailroom stage: dead letters, health, pipelines, routes, suppression, trace."""

    def resolve() -> Target:
        if use_local:
            return local_target(state_dir)
        if stage:
            return aws_target(stage, region)
        raise ConfigError("say which stage: --stage <stage> (or MAILROOM_STAGE), or --local")

    click_ctx.obj = Context(resolve, as_json=as_json)


def _register() -> None:
    from mailroom_cli.control import resume, stop
    from mailroom_cli.dlq import dlq
    from mailroom_cli.health import health
    from mailroom_cli.monitor import monitor  # noqa: F401 - registers ``dlq monitor``
    from mailroom_cli.outbound import outbound
    from mailroom_cli.probe_cmd import probe
    from mailroom_cli.routes import routes
    from mailroom_cli.suppression_cmd import suppression
    from mailroom_cli.trace import audit, trace

    for command in (dlq, health, stop, resume, routes, suppression, trace, audit, probe, outbound):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point (``mailroom``)."""
    try:
        cli(prog_name="mailroom")
    except BrokenPipeError:
        # Python's recipe for a closed stdout: point it at devnull so the interpreter's final
        # flush does not fail again, and leave without a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
