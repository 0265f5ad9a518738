"""Command-line options built from config dataclasses, so each option's default lives only in
its config field, and its help beside it.

A field becomes an option when its metadata (or the `overrides` a command passes for configs
that carry none) has a "help". Other keys, where the CLI differs from the field: "cli_name",
"cli_type", "flags" (Typer's option names, e.g. ("--out", "-o")), "choices" (the values allowed,
shown in --help and checked while parsing), "cli_default" (a CLI-only default), "to_cli"
(field default -> CLI default) and "parse" (CLI value -> field value; it may return DEFAULT
to leave the field at its default). A field fed by several options lists them as dicts (name,
type, default, help) under "options"; "parse" then takes them by name. A nested config
dataclass contributes its own fields; overrides name those "outer.inner".
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from types import SimpleNamespace
from typing import Annotated, Any, Literal, get_type_hints

import typer

REQUIRED = inspect.Parameter.empty  # an option without a default
DEFAULT = object()  # what a "parse" returns to keep the field's own default
Overrides = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Opt:
    """One command-line parameter: name, type, default (REQUIRED: none) and help."""

    name: str
    type: Any
    default: Any = REQUIRED
    help: str = ""
    flags: tuple[str, ...] = ()
    argument: bool = False
    choices: tuple[str, ...] = ()

    def parameter(self) -> inspect.Parameter:
        """The parameter Typer reads: `name: Annotated[type, Option(...)] = default`.

        Choices become a Literal (listed in --help, checked at parse time); a bool is a plain
        flag pair `--x/--no-x` without Typer's `<bool>` metavar.
        """
        kind = self.type
        if self.choices:
            kind = Literal[self.choices]  # type: ignore[valid-type]
            kind = kind | None if _allows_none(self.type) else kind
        extra = {"metavar": ""} if self.type in (bool, bool | None) else {}
        if self.argument and self.name.endswith("_arg"):  # `out_arg` shows as [out]
            extra = {"metavar": self.name.removesuffix("_arg")}
        info = (typer.Argument(help=self.help, **extra) if self.argument
                else typer.Option(*self.flags, help=self.help, **extra))
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=self.default,
                                 annotation=Annotated[kind, info])


def _allows_none(hint: Any) -> bool:
    return hint is None or type(None) in getattr(hint, "__args__", ())


def command(app: typer.Typer, name: str, opts: Sequence[Opt]) -> Callable:
    """Decorator: register `run(args)` as command `name` taking `opts` (its docstring: help).

    Typer reads a command's parameters from its signature, so the registered function gets a
    `__signature__` built from `opts`; it hands the parsed values to `run` as attributes.
    """

    def register(run: Callable[[SimpleNamespace], None]) -> Callable[[SimpleNamespace], None]:
        def cmd(**values: Any) -> None:
            run(SimpleNamespace(**values))

        cmd.__signature__ = inspect.Signature([o.parameter() for o in opts])  # type: ignore
        cmd.__doc__ = run.__doc__
        app.command(name)(cmd)
        return run

    return register


def _field_default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return REQUIRED


def _specs(cls: type, overrides: Overrides, prefix: str = "") -> list[tuple[Field, Any, dict]]:
    """(field, type, CLI metadata) of each field of `cls` that the CLI sets, nested included."""
    hints = get_type_hints(cls)
    found = []
    for f in fields(cls):
        meta = {**f.metadata, **overrides.get(prefix + f.name, {})}
        nested = is_dataclass(hints[f.name]) and config_opts(hints[f.name], overrides,
                                                             f"{prefix}{f.name}.")
        if "help" in meta or "options" in meta or nested:
            found.append((f, hints[f.name], meta))
    return found


def config_opts(cls: type, overrides: Overrides | None = None, prefix: str = "") -> list[Opt]:
    """The options that set fields of config dataclass `cls`, in field order."""
    opts: list[Opt] = []
    for f, hint, meta in _specs(cls, overrides or {}, prefix):
        if "options" in meta:
            opts += [Opt(o["name"], o["type"], o["default"], o["help"], tuple(o.get("flags", ())),
                         choices=tuple(o.get("choices", ()))) for o in meta["options"]]
        elif "help" in meta:
            default = meta["cli_default"] if "cli_default" in meta else _field_default(f)
            if "to_cli" in meta and default is not REQUIRED:
                default = meta["to_cli"](default)
            opts.append(Opt(meta.get("cli_name", f.name), meta.get("cli_type", hint), default,
                            meta["help"], tuple(meta.get("flags", ())),
                            choices=tuple(meta.get("choices", ()))))
        else:
            opts += config_opts(hint, overrides, f"{prefix}{f.name}.")
    return opts


def config_from(cls: type, values: Mapping[str, Any], overrides: Overrides | None = None,
                prefix: str = "") -> Any:
    """`cls` built from parsed option values (fields without an option keep their defaults)."""
    kwargs: dict[str, Any] = {}
    for f, hint, meta in _specs(cls, overrides or {}, prefix):
        if "options" in meta:
            value = meta["parse"](**{o["name"]: values[o["name"]] for o in meta["options"]})
        elif "help" in meta:
            value = values[meta.get("cli_name", f.name)]
            value = meta["parse"](value) if "parse" in meta else value
        else:
            value = config_from(hint, values, overrides, f"{prefix}{f.name}.")
        if value is not DEFAULT:
            kwargs[f.name] = value
    return cls(**kwargs)

