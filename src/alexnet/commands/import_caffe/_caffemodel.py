"""Reading Caffe's binary files without Caffe: a ``.caffemodel`` (``NetParameter``) and a mean
``.binaryproto`` (``BlobProto``).

Both are Protocol Buffers messages. This module decodes the wire format itself (varints, 32/64-bit
fields and length-delimited fields, about a hundred lines) rather than using the ``protobuf``
package that tensorboard installs: the weights are a few long packed-float fields that become
NumPy arrays straight from the file's bytes (no Python float per weight), a truncated or foreign
file is reported with the byte offset and the field being read, and the import works whatever
``protobuf`` version or backend is installed. The tests write their files with the ``protobuf``
package, so the two sides are independent.

Field numbers are those of BVLC Caffe's ``src/caffe/proto/caffe.proto``. Both layer encodings are
read: the current ``repeated LayerParameter layer = 100`` (type a string, e.g. ``"Convolution"``)
and the old ``repeated V1LayerParameter layers = 2`` (type an enum), in which ``bvlc_alexnet`` was
first released. Blobs carry their shape as ``BlobShape shape = 7`` or as the older
``num``/``channels``/``height``/``width``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class CaffeFormatError(ValueError):
    """The file is not the Caffe message it should be, or is truncated; the message names the file."""


# Wire types (protobuf encoding).
VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5

# NetParameter
NET_NAME, NET_LAYER, NET_LAYERS_V1 = 1, 100, 2
# LayerParameter (current)
L_NAME, L_TYPE, L_BOTTOM, L_TOP, L_BLOBS = 1, 2, 3, 4, 7
L_PARAMS = {"convolution": 106, "inner_product": 117, "lrn": 118, "pooling": 121, "dropout": 108}
# V1LayerParameter
V1_V0_LAYER, V1_BOTTOM, V1_TOP, V1_NAME, V1_TYPE, V1_BLOBS = 1, 2, 3, 4, 5, 6
V1_PARAMS = {"convolution": 10, "inner_product": 17, "lrn": 18, "pooling": 19, "dropout": 12}
V1_TYPES = {
    1: "Accuracy",
    3: "Concat",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    12: "ImageData",
    14: "InnerProduct",
    15: "LRN",
    17: "Pooling",
    18: "ReLU",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    29: "MemoryData",
}
"""V1LayerParameter.LayerType values of the layers an AlexNet file holds (others keep their number)."""
# BlobProto
B_NUM, B_CHANNELS, B_HEIGHT, B_WIDTH, B_DATA, B_SHAPE, B_DOUBLE_DATA = 1, 2, 3, 4, 5, 7, 8
SHAPE_DIM = 1


class _Reader:
    """Fields of one message in ``buf[start:end]``; every read is bounds-checked."""

    def __init__(self, buf: memoryview, path: str, what: str) -> None:
        self.buf, self.path, self.what = buf, path, what

    def fail(self, offset: int, problem: str) -> CaffeFormatError:
        return CaffeFormatError(
            f"{self.path}: {problem} at byte {offset:,} of {len(self.buf):,} (reading {self.what})"
        )

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            if pos >= end:
                raise self.fail(
                    pos, "the data ends inside a number: the file is truncated or not a Caffe file"
                )
            byte = self.buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise self.fail(pos, "malformed number (varint longer than 10 bytes): not a Caffe file")

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
        """``(field number, wire type, value)``: an int for varints, the payload's ``(start, end)``
        for length-delimited fields, and the offset of the 4 or 8 bytes for fixed-size fields."""
        pos = start
        while pos < end:
            at = pos
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.fail(at, "field number 0: not a Caffe file")
            if wire == VARINT:
                value, pos = self.varint(pos, end)
            elif wire == BYTES:
                length, pos = self.varint(pos, end)
                if pos + length > end:
                    raise self.fail(
                        at,
                        f"field {number} claims {length:,} bytes but only {end - pos:,} "
                        f"remain: the file is truncated (or not a Caffe file)",
                    )
                value, pos = (pos, pos + length), pos + length
            elif wire in (FIXED32, FIXED64):
                size = 4 if wire == FIXED32 else 8
                if pos + size > end:
                    raise self.fail(at, "the data ends inside a number: the file is truncated")
                value, pos = pos, pos + size
            else:
                raise self.fail(
                    at, f"wire type {wire} (field {number}) does not occur in Caffe's files: not a Caffe file"
                )
            yield number, wire, value

    def text(self, span: tuple[int, int]) -> str:
        try:
            return bytes(self.buf[span[0] : span[1]]).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(span[0], "a name that is not UTF-8 text: not a Caffe file") from None

    def floats(self, wire: int, value: Any, dtype: str, number: int) -> np.ndarray:
        """A packed run (``BYTES``) or one unpacked value of a repeated float/double field."""
        size = np.dtype(dtype).itemsize
        if wire == BYTES:
            start, end = value
            if (end - start) % size:
                raise self.fail(
                    start,
                    f"packed field {number} is {end - start} bytes, not a whole number "
                    f"of {size}-byte values: the file is damaged",
                )
            return np.frombuffer(self.buf, dtype, (end - start) // size, start)
        if wire != (FIXED32 if size == 4 else FIXED64):
            raise self.fail(value if isinstance(value, int) else 0, f"field {number} should hold numbers")
        return np.frombuffer(self.buf, dtype, 1, value)

    def ints(self, wire: int, value: Any) -> list[int]:
        """A packed run or one value of a repeated varint field."""
        if wire == VARINT:
            return [value]
        if wire != BYTES:
            raise self.fail(0, "an integer field with the wrong wire type: not a Caffe file")
        out, pos = [], value[0]
        while pos < value[1]:
            v, pos = self.varint(pos, value[1])
            out.append(v)
        return out

    def scalar(self, wire: int, value: Any, kind: str) -> Any:
        if kind == "float":
            if wire != FIXED32:
                raise self.fail(0, "a float field with the wrong wire type: not a Caffe file")
            return struct.unpack_from("<f", self.buf, value)[0]
        ints = self.ints(wire, value)
        return ints[-1] if ints else 0


@dataclass
class CaffeLayer:
    """One layer of a Caffe net: its name, type, learnt blobs (weights, biases) and the parameters
    this importer checks."""

    name: str
    type: str
    bottoms: list[str] = field(default_factory=list)
    tops: list[str] = field(default_factory=list)
    blobs: list[np.ndarray] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


# (field number, kind, repeated) of the parameters checked, per parameter message (same numbers in
# the current and V1 encodings).
PARAM_FIELDS: dict[str, dict[str, tuple[int, str, bool]]] = {
    "convolution": {
        "num_output": (1, "int", False),
        "bias_term": (2, "int", False),
        "pad": (3, "int", True),
        "kernel_size": (4, "int", True),
        "group": (5, "int", False),
        "stride": (6, "int", True),
        "pad_h": (9, "int", False),
        "pad_w": (10, "int", False),
        "kernel_h": (11, "int", False),
        "kernel_w": (12, "int", False),
        "stride_h": (13, "int", False),
        "stride_w": (14, "int", False),
        "dilation": (18, "int", True),
    },
    "inner_product": {
        "num_output": (1, "int", False),
        "bias_term": (2, "int", False),
        "axis": (5, "int", False),
        "transpose": (6, "int", False),
    },
    "lrn": {
        "local_size": (1, "int", False),
        "alpha": (2, "float", False),
        "beta": (3, "float", False),
        "norm_region": (4, "int", False),
        "k": (5, "float", False),
    },
    "pooling": {
        "pool": (1, "int", False),
        "kernel_size": (2, "int", False),
        "stride": (3, "int", False),
        "pad": (4, "int", False),
        "kernel_h": (5, "int", False),
        "kernel_w": (6, "int", False),
        "stride_h": (7, "int", False),
        "stride_w": (8, "int", False),
        "global_pooling": (12, "int", False),
    },
    "dropout": {"dropout_ratio": (1, "float", False)},
}
PARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "convolution": {"bias_term": 1, "pad": [], "stride": [], "kernel_size": [], "group": 1, "dilation": []},
    "inner_product": {"bias_term": 1, "axis": 1, "transpose": 0},
    "lrn": {"local_size": 5, "alpha": 1.0, "beta": 0.75, "norm_region": 0, "k": 1.0},
    "pooling": {"pool": 0, "stride": 1, "pad": 0, "global_pooling": 0},
    "dropout": {"dropout_ratio": 0.5},
}
"""caffe.proto's defaults for the fields above that have one."""


def _params(r: _Reader, span: tuple[int, int], kind: str) -> dict[str, Any]:
    by_number = {num: (name, k, rep) for name, (num, k, rep) in PARAM_FIELDS[kind].items()}
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in PARAM_DEFAULTS[kind].items()}
    for number, wire, value in r.fields(*span):
        if number not in by_number:
            continue
        name, k, repeated = by_number[number]
        if repeated:
            out[name] = out.get(name, []) + r.ints(wire, value)
        else:
            out[name] = r.scalar(wire, value, k)
    return out


def _blob(r: _Reader, span: tuple[int, int], where: str) -> np.ndarray:
    """A BlobProto as a float32 array of its declared shape."""
    dims: list[int] | None = None
    legacy = [0, 0, 0, 0]
    chunks: list[np.ndarray] = []
    for number, wire, value in r.fields(*span):
        if number == B_SHAPE and wire == BYTES:
            dims = []
            for n2, w2, v2 in r.fields(*value):
                if n2 == SHAPE_DIM:
                    dims += r.ints(w2, v2)
        elif number in (B_NUM, B_CHANNELS, B_HEIGHT, B_WIDTH) and wire == VARINT:
            legacy[number - 1] = value
        elif number == B_DATA:
            chunks.append(r.floats(wire, value, "<f4", number))
        elif number == B_DOUBLE_DATA:
            chunks.append(r.floats(wire, value, "<f8", number).astype(np.float32))
    shape = tuple(dims) if dims is not None else tuple(legacy)
    data = chunks[0] if len(chunks) == 1 else (np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
    if int(np.prod(shape)) != data.size:
        raise CaffeFormatError(
            f"{r.path}: {where} declares shape {list(shape)} ({int(np.prod(shape)):,} values) "
            f"but holds {data.size:,} values: the file is damaged or truncated"
        )
    return data.reshape(shape)


def _layer(r: _Reader, span: tuple[int, int], v1: bool) -> CaffeLayer:
    name_f, type_f, bottom_f, top_f, blobs_f = (
        (V1_NAME, V1_TYPE, V1_BOTTOM, V1_TOP, V1_BLOBS) if v1 else (L_NAME, L_TYPE, L_BOTTOM, L_TOP, L_BLOBS)
    )
    param_f = {num: kind for kind, num in (V1_PARAMS if v1 else L_PARAMS).items()}
    layer = CaffeLayer(name="", type="")
    blob_spans, param_spans = [], []
    for number, wire, value in r.fields(*span):
        if v1 and number == V1_V0_LAYER:
            raise CaffeFormatError(
                f"{r.path}: written by a Caffe older than 2014 (V0 layers); convert it "
                f"with Caffe's tools/upgrade_net_proto_binary first"
            )
        if number == name_f and wire == BYTES:
            layer.name = r.text(value)
        elif number == type_f:
            if v1 and wire == VARINT:
                layer.type = V1_TYPES.get(value, f"V1 type {value}")
            elif not v1 and wire == BYTES:
                layer.type = r.text(value)
        elif number == bottom_f and wire == BYTES:
            layer.bottoms.append(r.text(value))
        elif number == top_f and wire == BYTES:
            layer.tops.append(r.text(value))
        elif number == blobs_f and wire == BYTES:
            blob_spans.append(value)
        elif number in param_f and wire == BYTES:
            param_spans.append((param_f[number], value))
    for kind, pspan in param_spans:
        layer.params[kind] = _params(r, pspan, kind)
    layer.blobs = [_blob(r, s, f"blob {i} of layer {layer.name!r}") for i, s in enumerate(blob_spans)]
    return layer


def _read_bytes(path: str | Path) -> memoryview:
    path = Path(path)
    if not path.is_file():
        raise CaffeFormatError(f"file not found: {path}")
    data = path.read_bytes()
    if not data:
        raise CaffeFormatError(f"{path} is empty (0 bytes)")
    return memoryview(data)


def read_net(path: str | Path) -> tuple[str, list[CaffeLayer]]:
    """``(net name, layers in file order)`` of a ``.caffemodel`` (a binary ``NetParameter``)."""
    buf = _read_bytes(path)
    head = bytes(buf[:64]).lstrip()
    if head.startswith((b"name:", b"layer", b"input", b"#", b"layers")):
        raise CaffeFormatError(
            f"{path} is a text prototxt (the network's description); the weights are in the "
            f"binary .caffemodel file"
        )
    r = _Reader(buf, str(path), "the NetParameter")
    name, layers = "", []
    for number, wire, value in r.fields(0, len(buf)):
        if number == NET_NAME and wire == BYTES:
            name = r.text(value)
        elif number in (NET_LAYER, NET_LAYERS_V1):
            if wire != BYTES:
                blob = " (it looks like a .binaryproto blob, e.g. a mean file)" if wire == VARINT else ""
                raise CaffeFormatError(
                    f"{path}: not a Caffe model (.caffemodel): field {number} should be a layer{blob}"
                )
            r.what = f"layer {len(layers)}"
            layers.append(_layer(r, value, v1=number == NET_LAYERS_V1))
            r.what = "the NetParameter"
    if not layers:
        raise CaffeFormatError(f"{path} holds no layers: not a Caffe model (.caffemodel)")
    return name, layers


def read_blob(path: str | Path) -> np.ndarray:
    """The array in a ``.binaryproto`` file (a binary ``BlobProto``, e.g. ``imagenet_mean.binaryproto``)."""
    buf = _read_bytes(path)
    r = _Reader(buf, str(path), "the BlobProto")
    return _blob(r, (0, len(buf)), "the blob")
