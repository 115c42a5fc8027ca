"""The command line: the app and main(). Each command lives in advisor/commands/; exit codes are
advisor/exitcodes.py's table (the README's)."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Optional

import click

from advisor import __version__
from advisor.commands import COMMANDS
from advisor.commands.params import Group
from advisor.errors import AdvisorError
from advisor.exitcodes import Exit

CONTEXT = {"help_option_names": ["-h", "--help"]}
MAX_INTERNAL_ECHO = 200  # not-knowledge: characters of an internal error's message on its one line
DEBUG_ENV = "ADVISOR_DEBUG"


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
                         help="Print the version."),
            click.Option(["--debug"], is_flag=True, expose_value=False,
                         help=f"Print the traceback of an internal error (or set {DEBUG_ENV}=1).")],
)
groups = {"rules": Group("rules", help="List, explain, check and fit rules.", no_args_is_help=True,
                         context_settings=CONTEXT)}
for name, module_name, function, epilog, group in COMMANDS:
    (groups[group] if group else app).add_lazy(name, f"advisor.commands.{module_name}", function, epilog)
app.add_command(groups["rules"])


def _fail(message: str, code: int = Exit.BAD_INPUT) -> None:
    sys.stderr.write(f"advisor: error: {' '.join(message.split())}\n")
    sys.exit(int(code))


def _debugging(argv: list[str]) -> bool:
    """--debug before the command, or ADVISOR_DEBUG set to anything but 0 / empty."""
    words = argv[: argv.index("--")] if "--" in argv else argv
    return "--debug" in words or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: one-line errors and documented exit codes; a traceback only for an internal
    error, and only with --debug or ADVISOR_DEBUG=1."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app.main(args=args, prog_name="advisor", standalone_mode=False)
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
    except BrokenPipeError:  # the reader closed the pipe (`| head`): nothing left to say, and no error
        # stdout's buffer cannot be flushed to a closed pipe at exit (Python would exit 120): point it at devnull
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        _fail("interrupted", Exit.INTERRUPTED)
    except Exception as exc:  # a bug: still one line (unless debugging), and the exit code of an error
        if _debugging(args):
            traceback.print_exc()
            _fail(f"internal error: {type(exc).__name__} (please report this, with the traceback above)")
        exc_text = str(exc)
        if len(exc_text) > MAX_INTERNAL_ECHO:
            exc_text = exc_text[:MAX_INTERNAL_ECHO] + "..."
        _fail(f"internal error: {type(exc).__name__}: {exc_text} (please report this; --debug or {DEBUG_ENV}=1 "
              "prints the traceback)")
    sys.exit(result if isinstance(result, int) else 0)
