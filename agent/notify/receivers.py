"""The receiver types: importing this module registers all of them (see agent.notify.base).

`ReceiverUnion` is the schema of one `notifications.receivers` entry: the type's own `Config`, chosen by
`type` (an unknown type names the known ones). A new type is one more module imported here.
"""

from typing import Annotated, Union

from pydantic import Field

from agent.notify import (  # noqa: F401  (imported for their @register side effect)
    alertmanager,
    email,
    mqtt,
    webhook,
)
from agent.notify.base import REGISTRY

ReceiverUnion = Annotated[
    Union[tuple(cls.Config for cls in REGISTRY.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="type"),
]

__all__ = ["REGISTRY", "ReceiverUnion"]
