"""The command line: the app and main(). Each command lives in advisor/commands/; exit codes are
advisor/exitcodes.py's table (the README's)."""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import typer

from advisor import __version__
from advisor.commands import COMMANDS
from advisor.errors import AdvisorError
from advisor.exitcodes import Exit

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


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """advisor: fine-tuning hyperparameters from declarative rules, each value with its source."""


def _fail(message: str, code: int = Exit.BAD_INPUT) -> None:
    sys.stderr.write(f"advisor: error: {' '.join(message.split())}\n")
    sys.exit(int(code))


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: one-line errors and documented exit codes, never a traceback."""
    try:
        result = app(args=argv, prog_name="advisor", standalone_mode=False)
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
    except Exception as exc:  # a bug: still one line, and the exit code of an error
        _fail(f"internal error: {type(exc).__name__}: {exc} (please report this)")
    sys.exit(result if isinstance(result, int) else 0)
