"""The command line: the app and main(). Each command lives in advisor/commands/; exit codes are
advisor/exitcodes.py's table (the README's)."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Optional

import typer

from advisor import __version__
from advisor.commands import COMMANDS
from advisor.errors import AdvisorError
from advisor.exitcodes import Exit

MAX_INTERNAL_ECHO = 200  # not-knowledge: characters of an internal error's message on its one line

app = typer.Typer(
    name="advisor",
    help="Rule-based hyperparameter advisor for LLM fine-tuning (LoRA / QLoRA / full; SFT, DPO, GRPO, PPO, RAFT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
groups = {"rules": typer.Typer(help="List, explain, check and fit rules.", no_args_is_help=True)}
app.add_typer(groups["rules"], name="rules")

for name, module_name, function, epilog, group in COMMANDS:
    module = importlib.import_module(f"advisor.commands.{module_name}")
    target = groups[group] if group else app
    target.command(name, epilog=getattr(module, epilog) if epilog else None)(getattr(module, function))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"advisor {__version__}")
        raise typer.Exit()


DEBUG_ENV = "ADVISOR_DEBUG"


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help=f"Print the traceback of an internal error (or set {DEBUG_ENV}=1)."),
) -> None:
    """advisor: fine-tuning hyperparameters from declarative rules, each value with its source."""


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
        result = app(args=args, prog_name="advisor", standalone_mode=False)
    except AdvisorError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.TyperException as exc:  # typer's usage errors (unknown option, bad value, ...)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(0)
        hint = f" (hint: {ctx.command_path} --help)" if ctx is not None else ""
        _fail(exc.format_message() + hint)
    except typer.Abort:
        _fail("aborted", Exit.INTERRUPTED)
    except BrokenPipeError:
        sys.exit(0)
    except KeyboardInterrupt:
        _fail("interrupted", Exit.INTERRUPTED)
    except Exception as exc:  # a bug: still one line (unless debugging), and the exit code of an error
        if _debugging(args):
            traceback.print_exc()
        else:
            exc_text = str(exc)
            if len(exc_text) > MAX_INTERNAL_ECHO:
                exc_text = exc_text[:MAX_INTERNAL_ECHO] + "..."
            hint = f"; --debug or {DEBUG_ENV}=1 prints the traceback"
            _fail(f"internal error: {type(exc).__name__}: {exc_text} (please report this{hint})")
        _fail(f"internal error: {type(exc).__name__} (please report this, with the traceback above)")
    sys.exit(result if isinstance(result, int) else 0)
