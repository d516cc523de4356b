"""Just enough of the protobuf wire format to move whole fields between messages without
decoding them: used where decoding large descriptor sets in Python would cost more than the
work itself."""

from __future__ import annotations

from collections.abc import Iterator


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) with the given number."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def fields(data: bytes) -> Iterator[tuple[int, slice, slice]]:
    """(field number, the whole field, its payload) for each top-level field of a message.
    The payload of a varint or fixed-width field is its value bytes."""
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        key, pos = _decode_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _decode_varint(data, pos)
        elif wire == 1:
            after = pos + 8
        elif wire == 5:
            after = pos + 4
        elif wire == 2:
            size, pos = _decode_varint(data, pos)
            after = pos + size
        else:
            raise ValueError(f"unsupported wire type {wire} at byte {start}")
        yield number, slice(start, after), slice(pos, after)
        pos = after


def _decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
