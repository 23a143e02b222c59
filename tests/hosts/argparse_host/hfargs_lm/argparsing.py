"""A small HfArgumentParser look-alike: one argparse flag per dataclass field.

Like transformers' parser it resolves the field annotations with
`typing.get_type_hints(cls)`. Under `from __future__ import annotations` the
annotations are strings, evaluated in the namespace of
`sys.modules[cls.__module__]`, so the defining module must be a registered,
imported module (running it through `runpy` with another name breaks this).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _str2bool(text: str) -> bool:
    """argparse type for booleans: accepts true/false/yes/no/1/0."""
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "t", "y"):
        return True
    if lowered in ("false", "no", "0", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _strip_optional(tp: object) -> object:
    """Return X for Optional[X] / X | None, else tp unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


class HfArgumentParser(argparse.ArgumentParser):
    """argparse parser built from dataclasses (named after the transformers class it imitates)."""

    def __init__(self, dataclass_types: typing.Sequence[type], **kwargs: typing.Any) -> None:
        super().__init__(**kwargs)
        self.dataclass_types = list(dataclass_types)
        for dtype in self.dataclass_types:
            self._add_dataclass_arguments(dtype)

    def _add_dataclass_arguments(self, dtype: type) -> None:
        hints = typing.get_type_hints(dtype)  # needs sys.modules[dtype.__module__]
        group = self.add_argument_group(dtype.__name__)
        for field in dataclasses.fields(dtype):
            if not field.init:
                continue
            tp = _strip_optional(hints[field.name])
            kwargs: dict[str, typing.Any] = {"help": field.metadata.get("help")}
            if field.default is not dataclasses.MISSING:
                kwargs["default"] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                kwargs["default"] = field.default_factory()
            else:
                kwargs["required"] = True
            if typing.get_origin(tp) is typing.Literal:
                kwargs["choices"] = list(typing.get_args(tp))
                kwargs["type"] = type(kwargs["choices"][0])
            elif tp is bool:
                # `--flag` alone means True, `--flag false` is accepted too.
                kwargs.update(type=_str2bool, nargs="?", const=True)
            else:
                kwargs["type"] = tp
            group.add_argument(f"--{field.name}", **kwargs)

    def parse_args_into_dataclasses(self, args: list[str] | None = None) -> tuple:
        """Parse argv (default sys.argv[1:]) into one instance per dataclass."""
        namespace = vars(self.parse_args(args))
        instances = []
        for dtype in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(dtype) if f.init}
            instances.append(dtype(**{k: v for k, v in namespace.items() if k in names}))
        return tuple(instances)
