"""Building blocks of the config schema, importable by the packages that declare their own sections
(check types keep their settings next to their code) without importing the whole schema."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Annotated, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Pattern = Annotated[str, AfterValidator(_check_regex)]


def _check_absolute(value: str) -> str:
    if not os.path.isabs(value):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


# A path the daemon opens itself: its working directory is not the operator's, so a relative one would surprise.
AbsolutePath = Annotated[str, AfterValidator(_check_absolute)]


def check_label_names(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"{name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")
    return labels


LabelSet = Annotated[dict[str, str], AfterValidator(check_label_names)]


class _Named(Protocol):
    name: str


def unique_names(items: Sequence[_Named], what: str) -> dict[str, int]:
    """Index by name; a repeated name is an error naming both entries (`at [i]...` for file:line)."""
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in index:
            first = index[item.name]
            raise ValueError(f"at [{i}].name: duplicate {what} name {item.name!r} (first at {what}s[{first}])")
        index[item.name] = i
    return index
