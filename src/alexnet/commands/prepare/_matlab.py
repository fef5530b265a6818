"""Reading MATLAB v5 ``.mat`` files without scipy: enough of the format for ImageNet's devkit
(``ILSVRC2012_devkit_t12/data/meta.mat``), used by ``alexnet prepare``."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def read_mat_v5(data: bytes) -> dict:
    """The variables of a MATLAB v5 .mat file (enough of the format for the devkit's meta.mat:
    structs, cells, char arrays and numeric arrays, optionally zlib-compressed)."""
    if data[126:128] not in (b"IM", b"MI"):
        raise ValueError("not a MATLAB v5 file")
    endian = "<" if data[126:128] == b"IM" else ">"
    num = {
        1: "i1",
        2: "u1",
        3: "i2",
        4: "u2",
        5: "i4",
        6: "u4",
        7: "f4",
        9: "f8",
        12: "i8",
        13: "u8",
        16: "u1",
        17: "u2",
        18: "u4",
    }

    def element(buf: bytes, pos: int):
        kind, nbytes = struct.unpack_from(endian + "II", buf, pos)
        if kind >> 16:  # small data element
            nbytes, kind = kind >> 16, kind & 0xFFFF
            return kind, buf[pos + 4 : pos + 4 + nbytes], pos + 8
        body = buf[pos + 8 : pos + 8 + nbytes]
        return kind, body, pos + 8 + nbytes + (-nbytes % 8 if kind != 15 else 0)

    def values(kind: int, body: bytes):
        return np.frombuffer(body, dtype=endian + num[kind]) if kind in num else body

    def matrix(body: bytes):
        _, flags, p = element(body, 0)
        cls = struct.unpack_from(endian + "I", flags)[0] & 0xFF
        _, dims, p = element(body, p)
        dims = tuple(int(d) for d in np.frombuffer(dims, dtype=endian + "i4"))
        _, _name, p = element(body, p)
        count = int(np.prod(dims)) if dims else 0
        if cls == 1:  # cell
            out = []
            for _ in range(count):
                _, sub, p = element(body, p)
                out.append(matrix(sub) if sub else None)
            return out
        if cls == 2:  # struct
            _, flen, p = element(body, p)
            flen = int(np.frombuffer(flen, dtype=endian + "i4")[0])
            _, names, p = element(body, p)
            fields = [names[i : i + flen].split(b"\0")[0].decode() for i in range(0, len(names), flen)]
            out = []
            for _ in range(count):
                rec = {}
                for f in fields:
                    _, sub, p = element(body, p)
                    rec[f] = matrix(sub) if sub else None
                out.append(rec)
            return out
        kind, real, p = element(body, p)
        vals = values(kind, real)
        if cls == 4:  # char
            if kind == 16:
                return bytes(vals).decode("utf-8")
            return (
                "".join(chr(int(c)) for c in np.asarray(vals).reshape(dims[::-1]).T.reshape(-1))
                if len(dims) == 2 and dims[0] > 1
                else "".join(chr(int(c)) for c in np.asarray(vals))
            )
        arr = np.asarray(vals, dtype=np.float64)
        return arr.item() if arr.size == 1 else arr

    out, pos = {}, 128
    while pos + 8 <= len(data):
        kind, body, pos = element(data, pos)
        if kind == 15:
            body = zlib.decompress(body)
            kind, body, _ = element(body, 0)
        if kind == 14:
            _, flags, p = element(body, 0)
            _, _, p = element(body, p)
            _, name, _ = element(body, p)
            out[name.decode()] = matrix(body)
    return out
