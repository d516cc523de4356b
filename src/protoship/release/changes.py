"""What a schema change added or removed, read from two images' descriptors.

buf decides what *breaks*; this decides whether anything was *added* (a minor release) by
comparing the named elements of the module's own files. Names, not field numbers, are compared:
a new name is new API in every generated flavour.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from google.protobuf import descriptor_pb2

Level = Literal["major", "minor", "patch"]


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...]
    removed: tuple[str, ...]


def elements(image: Path, own: set[str]) -> set[str]:
    """Every named element of the files in `own`, as "kind full.name"."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes())
    found: set[str] = set()
    for fd in fds.file:
        if fd.name not in own:
            continue
        found.add(f"file {fd.name}")
        prefix = fd.package + "." if fd.package else ""
        for message in fd.message_type:
            found.update(_message(message, prefix))
        for enum in fd.enum_type:
            found.update(_enum(enum, prefix))
        for ext in fd.extension:
            found.add(f"extension {prefix}{ext.name}")
        for service in fd.service:
            name = prefix + service.name
            found.add(f"service {name}")
            found.update(f"method {name}.{m.name}" for m in service.method)
    return found


def _message(message: descriptor_pb2.DescriptorProto, prefix: str) -> Iterator[str]:
    name = prefix + message.name
    # Map entries are implementation details of a map field, not API of their own.
    if message.options.map_entry:
        return
    yield f"message {name}"
    for field in message.field:
        yield f"field {name}.{field.name}"
    for ext in message.extension:
        yield f"extension {name}.{ext.name}"
    for nested in message.nested_type:
        yield from _message(nested, name + ".")
    for enum in message.enum_type:
        yield from _enum(enum, name + ".")


def _enum(enum: descriptor_pb2.EnumDescriptorProto, prefix: str) -> Iterator[str]:
    name = prefix + enum.name
    yield f"enum {name}"
    for value in enum.value:
        yield f"enum value {name}.{value.name}"


def compare(old: set[str], new: set[str]) -> Changes:
    return Changes(added=tuple(sorted(new - old)), removed=tuple(sorted(old - new)))


def needed(breaks: bool, changes: Changes) -> Level:
    """The semantic-version level a change needs: a break is major, new API is minor."""
    if breaks:
        return "major"
    return "minor" if changes.added else "patch"
