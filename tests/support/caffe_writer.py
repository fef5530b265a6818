"""Writing Caffe files for the tests with the ``protobuf`` package, independently of the importer.

The message definitions below are built with ``descriptor_pb2`` from the field numbers of BVLC
Caffe's ``src/caffe/proto/caffe.proto`` (only the fields an AlexNet file uses), so the files are
encoded by protobuf's own serializer, not by code shared with
:mod:`alexnet.commands.import_caffe._caffemodel`.
``write_alexnet`` writes a net with AlexNet's layers (``bvlc_alexnet``'s deploy order) and given
blobs, in the current (``layer``, string types, ``BlobShape``) or the V1 (``layers``, enum types,
num/channels/height/width) format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
TYPES = {
    "string": F.TYPE_STRING,
    "float": F.TYPE_FLOAT,
    "double": F.TYPE_DOUBLE,
    "int32": F.TYPE_INT32,
    "int64": F.TYPE_INT64,
    "uint32": F.TYPE_UINT32,
    "bool": F.TYPE_BOOL,
    "enum": F.TYPE_INT32,
}

# message -> [(name, number, type or message name, repeated, packed)]
MESSAGES = {
    "BlobShape": [("dim", 1, "int64", True, True)],
    "BlobProto": [
        ("shape", 7, "BlobShape", False, False),
        ("data", 5, "float", True, True),
        ("double_data", 8, "double", True, True),
        ("num", 1, "int32", False, False),
        ("channels", 2, "int32", False, False),
        ("height", 3, "int32", False, False),
        ("width", 4, "int32", False, False),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, "uint32", False, False),
        ("bias_term", 2, "bool", False, False),
        ("pad", 3, "uint32", True, False),
        ("kernel_size", 4, "uint32", True, False),
        ("group", 5, "uint32", False, False),
        ("stride", 6, "uint32", True, False),
    ],
    "InnerProductParameter": [("num_output", 1, "uint32", False, False)],
    "LRNParameter": [
        ("local_size", 1, "uint32", False, False),
        ("alpha", 2, "float", False, False),
        ("beta", 3, "float", False, False),
        ("k", 5, "float", False, False),
    ],
    "PoolingParameter": [
        ("pool", 1, "enum", False, False),
        ("kernel_size", 2, "uint32", False, False),
        ("stride", 3, "uint32", False, False),
    ],
    "DropoutParameter": [("dropout_ratio", 1, "float", False, False)],
    "LayerParameter": [
        ("name", 1, "string", False, False),
        ("type", 2, "string", False, False),
        ("bottom", 3, "string", True, False),
        ("top", 4, "string", True, False),
        ("blobs", 7, "BlobProto", True, False),
        ("convolution_param", 106, "ConvolutionParameter", False, False),
        ("inner_product_param", 117, "InnerProductParameter", False, False),
        ("lrn_param", 118, "LRNParameter", False, False),
        ("pooling_param", 121, "PoolingParameter", False, False),
        ("dropout_param", 108, "DropoutParameter", False, False),
    ],
    "V1LayerParameter": [
        ("bottom", 2, "string", True, False),
        ("top", 3, "string", True, False),
        ("name", 4, "string", False, False),
        ("type", 5, "enum", False, False),
        ("blobs", 6, "BlobProto", True, False),
        ("convolution_param", 10, "ConvolutionParameter", False, False),
        ("inner_product_param", 17, "InnerProductParameter", False, False),
        ("lrn_param", 18, "LRNParameter", False, False),
        ("pooling_param", 19, "PoolingParameter", False, False),
        ("dropout_param", 12, "DropoutParameter", False, False),
    ],
    "NetParameter": [
        ("name", 1, "string", False, False),
        ("layer", 100, "LayerParameter", True, False),
        ("layers", 2, "V1LayerParameter", True, False),
    ],
}
V1_TYPE = {
    "Convolution": 4,
    "ReLU": 18,
    "LRN": 15,
    "Pooling": 17,
    "InnerProduct": 14,
    "Dropout": 6,
    "Softmax": 20,
    "Data": 5,
    "SoftmaxWithLoss": 21,
}


def _classes():
    fd = descriptor_pb2.FileDescriptorProto(name="caffe_test.proto", package="caffetest", syntax="proto2")
    for name, fields in MESSAGES.items():
        m = fd.message_type.add(name=name)
        for fname, number, ftype, repeated, packed in fields:
            f = m.field.add(
                name=fname, number=number, label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            )
            if ftype in TYPES:
                f.type = TYPES[ftype]
            else:
                f.type, f.type_name = F.TYPE_MESSAGE, f".caffetest.{ftype}"
            if packed:
                f.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffetest.{name}"))
        for name in MESSAGES
    }


MSG = _classes()

# bvlc_alexnet's deploy.prototxt, layer by layer: (name, type, params)
CONV = {
    "conv1": dict(num_output=96, kernel_size=[11], stride=[4]),
    "conv2": dict(num_output=256, kernel_size=[5], pad=[2], group=2),
    "conv3": dict(num_output=384, kernel_size=[3], pad=[1]),
    "conv4": dict(num_output=384, kernel_size=[3], pad=[1], group=2),
    "conv5": dict(num_output=256, kernel_size=[3], pad=[1], group=2),
}
LRN = dict(local_size=5, alpha=1e-4, beta=0.75)
POOL = dict(pool=0, kernel_size=3, stride=2)


def alexnet_layers(order: str = "alexnet"):
    """(name, type, params) in bvlc_alexnet's order; ``order="caffenet"`` puts pooling before LRN."""
    out = [("data", "Data", None)]
    for i in (1, 2):
        block = [
            (f"conv{i}", "Convolution", CONV[f"conv{i}"]),
            (f"relu{i}", "ReLU", None),
            (f"norm{i}", "LRN", LRN),
            (f"pool{i}", "Pooling", POOL),
        ]
        if order == "caffenet":
            block[2], block[3] = block[3], block[2]
        out += block
    for i in (3, 4, 5):
        out += [(f"conv{i}", "Convolution", CONV[f"conv{i}"]), (f"relu{i}", "ReLU", None)]
    out.append(("pool5", "Pooling", POOL))
    for i in (6, 7):
        out += [
            (f"fc{i}", "InnerProduct", dict(num_output=4096)),
            (f"relu{i}", "ReLU", None),
            (f"drop{i}", "Dropout", dict(dropout_ratio=0.5)),
        ]
    out += [("fc8", "InnerProduct", None), ("prob", "Softmax", None)]
    return out


_DATA: dict[int, tuple[np.ndarray, bytes]] = {}


def _data(a: np.ndarray) -> bytes:
    """A BlobProto holding only ``a``'s values, serialized once per array (the slow part)."""
    if id(a) not in _DATA or _DATA[id(a)][0] is not a:
        b = MSG["BlobProto"]()
        b.data.extend(np.asarray(a, np.float32).ravel().tolist())
        _DATA[id(a)] = (a, b.SerializeToString())
    return _DATA[id(a)][1]


def blob(array: np.ndarray, fmt: str):
    """A BlobProto: ``shape`` (current) or num/channels/height/width padded with leading 1s (V1)."""
    b = MSG["BlobProto"]()
    b.ParseFromString(_data(array))
    if fmt == "current":
        b.shape.dim.extend(array.shape)
    else:
        dims = (1,) * (4 - array.ndim) + array.shape
        b.num, b.channels, b.height, b.width = dims
    return b


def net_bytes(
    blobs: dict[str, tuple[np.ndarray, np.ndarray]],
    fmt: str = "current",
    order: str = "alexnet",
    layers=None,
    lrn=None,
) -> bytes:
    """A serialized NetParameter with ``blobs[name] = (weight, bias)`` and AlexNet's layers (or
    ``layers``, a list of (name, type, params))."""
    net = MSG["NetParameter"](name="AlexNet")
    for name, ltype, params in layers if layers is not None else alexnet_layers(order):
        if fmt == "current":
            layer = net.layer.add(name=name, type=ltype)
        else:
            layer = net.layers.add(name=name, type=V1_TYPE[ltype])
        if name in blobs:
            layer.blobs.extend([blob(t, fmt) for t in blobs[name]])
        if ltype == "LRN":
            params = lrn or params
        if params is None and ltype == "InnerProduct":
            params = dict(num_output=int(blobs[name][0].shape[0]))
        field = {
            "Convolution": "convolution_param",
            "InnerProduct": "inner_product_param",
            "LRN": "lrn_param",
            "Pooling": "pooling_param",
            "Dropout": "dropout_param",
        }.get(ltype)
        if field and params:
            getattr(layer, field).CopyFrom(MSG[getattr(layer, field).DESCRIPTOR.name](**params))
    return net.SerializeToString()


def random_alexnet_blobs(num_classes: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random (weight, bias) per layer in Caffe's shapes, scaled so that activations stay of order
    one to a hundred on 0..255 images: the LRN's denominators then differ clearly from 1."""
    rng = np.random.default_rng(seed)
    shapes = {
        "conv1": (96, 3, 11, 11),
        "conv2": (256, 48, 5, 5),
        "conv3": (384, 256, 3, 3),
        "conv4": (384, 192, 3, 3),
        "conv5": (256, 192, 3, 3),
        "fc6": (4096, 9216),
        "fc7": (4096, 4096),
        "fc8": (num_classes, 4096),
    }
    out = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        b = rng.standard_normal(shape[0], dtype=np.float32) * np.float32(0.1)
        out[name] = (w, b)
    return out


def mean_bytes(mean_bgr: np.ndarray) -> bytes:
    """A BlobProto mean image (1, 3, S, S) in the old num/channels/height/width form."""
    return blob(mean_bgr[None], "v1").SerializeToString()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
