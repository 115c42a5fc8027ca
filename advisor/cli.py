"""The command line: the app and main(). Each command lives in advisor/commands/; exit codes are
advisor/exitcodes.py's table (the README's)."""

from __future__ import annotations

import sys
from typing import Optional

import click

from advisor import __version__
from advisor.commands import COMMANDS
from advisor.commands.params import Group
from advisor.errors import AdvisorError
from advisor.exitcodes import Exit

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        click.echo(f"advisor {__version__}")
        ctx.exit()


app = Group(
    "advisor",
    help="Rule-based hyperparameter advisor for LLM fine-tuning (LoRA / QLoRA / full; SFT, DPO, GRPO, PPO, "
         "RAFT).\n\nadvisor: fine-tuning hyperparameters from declarative rules, each value with its source.",
    no_args_is_help=True, context_settings=CONTEXT,
    params=[click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True, callback=_version,
                         help="Print the version.")],
)
groups = {"rules": Group("rules", help="List, explain, check and fit rules.", no_args_is_help=True,
                         context_settings=CONTEXT)}
for name, module_name, function, epilog, group in COMMANDS:
    (groups[group] if group else app).add_lazy(name, f"advisor.commands.{module_name}", function, epilog)
app.add_command(groups["rules"])


def _fail(message: str, code: int = Exit.BAD_INPUT) -> None:
    sys.stderr.write(f"advisor: error: {' '.join(message.split())}\n")
    sys.exit(int(code))


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: one-line errors and documented exit codes, never a traceback."""
    try:
        result = app.main(args=argv, prog_name="advisor", standalone_mode=False)
    except AdvisorError as exc:
        _fail(str(exc), exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(0)
    except click.ClickException as exc:  # usage errors (unknown option, bad value, ...)
        ctx = getattr(exc, "ctx", None)
        hint = f" (hint: {ctx.command_path} --help)" if ctx is not None else ""
        _fail(exc.format_message() + hint)
    except click.exceptions.Abort:
        _fail("aborted", Exit.INTERRUPTED)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        _fail("interrupted", Exit.INTERRUPTED)
    except Exception as exc:  # a bug: still one line, and the exit code of an error
        _fail(f"internal error: {type(exc).__name__}: {exc} (please report this)")
    sys.exit(result if isinstance(result, int) else 0)
