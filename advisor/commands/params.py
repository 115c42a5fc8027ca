"""Annotated options on plain functions, built into click commands.

Each command is a function whose parameters say what they are, as fastapi-cli and typer write
them: ``model: Annotated[str, Option("--model", "-m", help=...)]``. This module reads those
annotations and builds the click command. It is typer's idea in a hundred lines, for one reason:
typer 0.29 coerces every option through pydantic and older releases import rich's markdown stack
at start-up; together they were most of `advisor recommend`'s time (bench/results/startup.md),
while click alone costs a few milliseconds.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


class Option:
    def __init__(self, *decls: str, help: str = "") -> None:
        self.decls, self.help = decls, help


class Argument:
    def __init__(self, *, help: str = "") -> None:
        self.help = help


def _unwrap(hint: Any) -> tuple[Any, Any]:
    """(the annotated type, its Option / Argument marker)."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
        marker = next((e for e in extras if isinstance(e, (Option, Argument))), None)
        return base, marker
    return hint, None


def _base(tp: Any) -> tuple[Any, bool]:
    """The value type, and whether the parameter takes many (list[X]); Optional is looked through."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0], True
    return tp, False


CLICK_TYPES: dict[Any, Any] = {str: click.STRING, int: click.INT, float: click.FLOAT,
                               Path: click.Path(path_type=Path)}


def _param(name: str, hint: Any, default: Any) -> tuple[click.Parameter, str | None]:
    tp, marker = _unwrap(hint)
    value_type, many = _base(tp)
    required = default is inspect.Parameter.empty
    given: dict[str, Any] = {} if required else {"default": tuple(default) if many else default}  # none: click requires it
    if isinstance(marker, Argument):
        arg = click.Argument([name], type=CLICK_TYPES[value_type], required=required, nargs=-1 if many else 1,
                             **({} if many else given))
        return arg, marker.help
    if not isinstance(marker, Option):
        raise TypeError(f"parameter {name!r} has no Option or Argument annotation")
    shown = None if required or default in (None, False, [], ()) else default
    if value_type is bool:
        opt = click.Option([*marker.decls, name], is_flag=True, default=bool(default), help=marker.help)
    else:
        opt = click.Option([*marker.decls, name], type=CLICK_TYPES[value_type], required=required,
                           multiple=many, help=marker.help, show_default=shown is not None, **given)
    return opt, None


def command(func: Callable[..., Any], name: str, epilog: str | None = None) -> click.Command:
    """A click command calling ``func`` with its parameters as typed (lists as lists)."""
    hints = typing.get_type_hints(func, include_extras=True)
    params: list[click.Parameter] = []
    arg_help: list[tuple[str, str]] = []
    many: set[str] = set()
    for pname, p in inspect.signature(func).parameters.items():
        param, helptext = _param(pname, hints[pname], p.default)
        params.append(param)
        if _base(_unwrap(hints[pname])[0])[1]:
            many.add(pname)
        if helptext:
            arg_help.append((pname.upper(), helptext))
    doc = inspect.getdoc(func) or ""
    if arg_help:  # click gives arguments no help of their own: list them after the summary
        doc += "\n\n\b\nArguments:\n" + "\n".join(f"  {n}  {h}" for n, h in arg_help)

    def callback(**kwargs: Any) -> Any:
        return func(**{k: list(v) if k in many else v for k, v in kwargs.items()})

    return click.Command(name, callback=callback, params=params, help=doc, epilog=epilog,
                         context_settings={"help_option_names": ["-h", "--help"]})


class Group(click.Group):
    """Commands listed in the order they were added (click sorts them by name), each built when it is
    first asked for: a run imports and builds only the command it runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str, str]] = {}  # name -> (module, function, epilog constant)
        self.order: list[str] = []

    def add_lazy(self, name: str, module: str, function: str, epilog: str) -> None:
        self.lazy[name] = (module, function, epilog)
        self.order.append(name)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(cmd, name)
        self.order.append(name or str(cmd.name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            import importlib

            module_name, function, epilog = self.lazy[cmd_name]
            module = importlib.import_module(module_name)
            self.commands[cmd_name] = command(getattr(module, function), cmd_name,
                                              getattr(module, epilog) if epilog else None)
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.order)
