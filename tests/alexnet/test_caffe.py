"""``alexnet import-caffe``: files written here in Caffe's wire format by the ``protobuf`` package
(tests/support/caffe_writer.py, independent of the importer), imported, and the two-tower network
checked against a forward pass written below with Caffe's semantics."""

from __future__ import annotations

from dataclasses import replace

import caffe_writer as cw
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet.cli import main
from alexnet.commands.import_caffe import import_caffe
from alexnet.commands.import_caffe._caffemodel import CaffeFormatError
from alexnet.evaluation.checkpoints import load_model
from alexnet.models.grouped import grouped_from
from alexnet.models.model import AlexNet
from twogpu import record_crossings

CLASSES = 10


# ------------------------------------------------------------------------- Caffe's computation
def caffe_lrn(x: torch.Tensor, n: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Caffe's LRNLayer (ACROSS_CHANNELS): x / (k + α/n Σ_{window over ALL channels} x²)^β, the
    window zero-padded at channel 0 and C−1 (lrn_layer.cpp, CrossChannelForward_cpu)."""
    c = x.shape[1]
    padded = F.pad(x * x, (0, 0, 0, 0, n // 2, n // 2))
    window = sum(padded[:, i : i + c] for i in range(n))
    return x / (k + alpha / n * window) ** beta


def caffe_forward(blobs, x_bgr: torch.Tensor, lrn=caffe_lrn) -> torch.Tensor:
    """bvlc_alexnet's deploy.prototxt on BGR input, from the raw blobs; dropout is the identity at
    test time (Caffe's dropout scales while training)."""
    t = {k: (torch.from_numpy(w).double(), torch.from_numpy(b).double()) for k, (w, b) in blobs.items()}
    x = x_bgr.double()
    x = lrn(F.relu(F.conv2d(x, *t["conv1"], stride=4)))
    x = F.max_pool2d(x, 3, 2)
    x = lrn(F.relu(F.conv2d(x, *t["conv2"], padding=2, groups=2)))
    x = F.max_pool2d(x, 3, 2)
    x = F.relu(F.conv2d(x, *t["conv3"], padding=1))
    x = F.relu(F.conv2d(x, *t["conv4"], padding=1, groups=2))
    x = F.max_pool2d(F.relu(F.conv2d(x, *t["conv5"], padding=1, groups=2)), 3, 2)
    x = F.relu(F.linear(x.flatten(1), *t["fc6"]))
    x = F.relu(F.linear(x, *t["fc7"]))
    return F.linear(x, *t["fc8"])


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).abs().max() / want.abs().max())


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def blobs():
    return cw.random_alexnet_blobs(CLASSES, seed=1)


@pytest.fixture(scope="module")
def mean_bgr():
    rng = np.random.default_rng(2)
    return (
        rng.random((3, 256, 256), dtype=np.float32) * 40
        + np.array([104, 117, 123], np.float32)[:, None, None]
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, blobs, mean_bgr):
    """The same weights as a current-format and a V1-format .caffemodel, and the mean file."""
    d = tmp_path_factory.mktemp("caffe")
    made = {
        "current": cw.write(d / "current.caffemodel", cw.net_bytes(blobs, "current")),
        "v1": cw.write(d / "v1.caffemodel", cw.net_bytes(blobs, "v1")),
        "mean": cw.write(d / "mean.binaryproto", cw.mean_bytes(mean_bgr)),
    }
    yield made
    for path in made.values():  # 220 MB each: not left in pytest's kept temp dirs
        path.unlink()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, files):
    d = tmp_path_factory.mktemp("ckpt")
    made = {
        fmt: import_caffe(files[fmt], d / f"{fmt}.pt", files["mean"], log=lambda *_: None)
        for fmt in ("current", "v1")
    }
    yield made
    for path in made.values():
        path.unlink()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(5)
    return torch.rand(2, 3, 227, 227) * 255 - 118  # RGB, mean-subtracted scale


@pytest.fixture(scope="module")
def reference(blobs, images):
    return caffe_forward(blobs, images.flip(1))  # Caffe sees the same pixels as BGR


# --------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("fmt", ["current", "v1"])
def test_two_towers_and_twin_compute_what_caffe_computes(checkpoints, images, reference, fmt):
    model, cfg = load_model(checkpoints[fmt], devices=("cpu", "cpu"))
    assert cfg.model.preset == "caffe" and cfg.model.num_classes == CLASSES
    assert not model.training
    with torch.no_grad():
        towers = model(images)
        twin = grouped_from(model).eval()(images)
    assert relative_error(towers, reference) < 1e-5
    assert relative_error(twin, reference) < 1e-5
    # The test can tell: LRN kept inside each tower (the paper's connectivity) is clearly different.
    paper_lrn = AlexNet(devices=("cpu", "cpu"), preset=replace(cfg.model, lrn_across_towers=False)).eval()
    paper_lrn.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert relative_error(paper_lrn(images), reference) > 1e-4


def test_conversion_places_each_caffe_blob(checkpoints, blobs, mean_bgr):
    state = torch.load(checkpoints["current"], weights_only=True)
    m = state["model"]
    w1 = torch.from_numpy(blobs["conv1"][0])
    torch.testing.assert_close(m["a.conv1.weight"], w1[:48, [2, 1, 0]], rtol=0, atol=0)  # BGR -> RGB
    torch.testing.assert_close(m["b.conv1.weight"], w1[48:, [2, 1, 0]], rtol=0, atol=0)
    w2 = torch.from_numpy(blobs["conv2"][0])  # group 0 -> a, 1 -> b
    torch.testing.assert_close(m["b.conv2.weight"], w2[128:], rtol=0, atol=0)
    w6 = torch.from_numpy(blobs["fc6"][0])  # rows split, columns kept
    torch.testing.assert_close(m["a.fc6.weight"], w6[:2048], rtol=0, atol=0)
    torch.testing.assert_close(m["b.fc6.bias"], torch.from_numpy(blobs["fc6"][1])[2048:], rtol=0, atol=0)
    torch.testing.assert_close(m["b.fc8.weight"], torch.from_numpy(blobs["fc8"][0])[5:], rtol=0, atol=0)
    torch.testing.assert_close(
        state["stats"]["mean"], torch.from_numpy(mean_bgr[::-1].copy()), rtol=0, atol=0
    )
    assert state["config"]["model"]["lrn_k"] == 1.0 and state["config"]["model"]["lrn_alpha"] == 1e-4
    assert state["config"]["data"]["image_size"] == 256


def test_halo_crossings_are_counted_as_their_own_site(checkpoints, images):
    model, _ = load_model(checkpoints["v1"])
    with record_crossings() as records, torch.no_grad():
        model(images)
    halos = [(r.site, r.source, r.target, r.shape) for r in records if r.site.startswith("lrn")]
    assert halos == [
        ("lrn1", "b", "a", (2, 2, 55, 55)),
        ("lrn1", "a", "b", (2, 2, 55, 55)),
        ("lrn2", "b", "a", (2, 2, 27, 27)),
        ("lrn2", "a", "b", (2, 2, 27, 27)),
    ]


def test_crossings_command_lists_the_halo(capsys):
    assert main(["crossings", "--set", 'model.preset="caffe"', "--batch-size", "1"]) == 0
    out = capsys.readouterr().out
    assert "lrn1" in out and "(1, 2, 55, 55)" in out and "lrn2" in out
    assert main(["crossings", "--batch-size", "1"]) == 0
    assert "lrn1" not in capsys.readouterr().out  # the paper's towers: no such crossing


# ---------------------------------------------------------------------------- refused files
def small_net(**kw) -> bytes:
    """AlexNet's layers with tiny blobs: enough for the checks that come before the shapes'."""
    tiny = {
        name: (np.zeros((1, 1, 1, 1), np.float32), np.zeros(1, np.float32))
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
    }
    return cw.net_bytes(tiny, **kw)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200), "not a Caffe file"),
        (b'name: "AlexNet"\nlayer {\n  name: "data"\n', "text prototxt"),
        (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not a Caffe"),
    ],
)
def test_not_a_caffemodel(tmp_path, content, message):
    path = cw.write(tmp_path / "x.caffemodel", content)
    with pytest.raises(CaffeFormatError, match=message) as e:
        import_caffe(path, tmp_path / "out.pt")
    assert str(path) in str(e.value)
    assert not (tmp_path / "out.pt").exists()


def test_mean_file_given_as_the_model(tmp_path, files):
    with pytest.raises(CaffeFormatError, match=r"not a Caffe model \(\.caffemodel\).*a mean file"):
        import_caffe(files["mean"], tmp_path / "out.pt")


def test_model_given_as_the_mean(tmp_path, files):
    net = cw.write(tmp_path / "net.caffemodel", small_net())
    with pytest.raises(CaffeFormatError, match="not a mean .binaryproto"):
        import_caffe(files["current"], tmp_path / "out.pt", mean_path=net)
    assert not (tmp_path / "out.pt").exists()


def test_truncated_file(tmp_path, files):
    with open(files["v1"], "rb") as f:  # cut inside conv2's weights
        path = cw.write(tmp_path / "cut.caffemodel", f.read(200_000))
    with pytest.raises(CaffeFormatError, match="truncated"):
        import_caffe(path, tmp_path / "out.pt")
    for cut in (1, 9, 40):  # inside fc8's blob or its last layer
        path = cw.write(tmp_path / "cut.caffemodel", small_net(fmt="v1")[:-cut])
        with pytest.raises(CaffeFormatError, match="truncated"):
            import_caffe(path, tmp_path / "out.pt")


def test_file_ending_at_a_layer_boundary(tmp_path):
    layers = [layer for layer in cw.alexnet_layers() if layer[0] not in ("fc8", "prob")]
    path = cw.write(tmp_path / "short.caffemodel", small_net(layers=layers))
    with pytest.raises(CaffeFormatError, match="ends after 21 of AlexNet's 22 layers.*truncated"):
        import_caffe(path, tmp_path / "out.pt")


def test_caffenet_order_is_refused(tmp_path):
    path = cw.write(tmp_path / "caffenet.caffemodel", small_net(order="caffenet"))
    with pytest.raises(CaffeFormatError, match="bvlc_reference_caffenet"):
        import_caffe(path, tmp_path / "out.pt")


def test_other_layer_name_is_refused(tmp_path):
    layers = [("fc6_new" if n == "fc6" else n, t, p) for n, t, p in cw.alexnet_layers()]
    tiny = {
        n: (np.zeros((1, 1), np.float32), np.zeros(1, np.float32))
        for n, t, _ in layers
        if t in ("Convolution", "InnerProduct")
    }
    path = cw.write(tmp_path / "renamed.caffemodel", cw.net_bytes(tiny, layers=layers))
    with pytest.raises(CaffeFormatError, match="'fc6_new'"):
        import_caffe(path, tmp_path / "out.pt")


def test_other_shape_is_refused(tmp_path, blobs):
    wrong = dict(blobs)
    wrong["conv1"] = (np.zeros((64, 3, 11, 11), np.float32), np.zeros(64, np.float32))
    for name in ("fc6", "fc7"):  # keep the file small: these are never reached
        wrong[name] = (np.zeros((1, 1), np.float32), np.zeros(1, np.float32))
    path = cw.write(tmp_path / "conv64.caffemodel", cw.net_bytes(wrong, "current"))
    with pytest.raises(
        CaffeFormatError, match=r"conv1's weight has shape 64×3×11×11, AlexNet's is 96×3×11×11"
    ):
        import_caffe(path, tmp_path / "out.pt")


def test_ungrouped_conv_and_other_lrn_are_refused(tmp_path):
    layers = [(n, t, dict(p, group=1) if n == "conv2" else p) for n, t, p in cw.alexnet_layers()]
    path = cw.write(tmp_path / "g.caffemodel", small_net(layers=layers))
    with pytest.raises(CaffeFormatError, match=r"conv2 has \(stride, pad, group\) = \(1, 2, 1\)"):
        import_caffe(path, tmp_path / "out.pt")


def test_existing_output_is_kept(tmp_path, files):
    out = tmp_path / "mine.pt"
    out.write_bytes(b"a run's checkpoint")
    assert main(["import-caffe", str(files["current"]), "--out", str(out)]) == 2
    assert out.read_bytes() == b"a run's checkpoint"


# --------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_import_evaluate_predict_figures_end_to_end(tmp_path, files, capsys):
    from PIL import Image

    data, rng = tmp_path / "data", np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(CLASSES):
            (data / split / f"c{c}").mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(
                data / split / f"c{c}" / "0.jpg"
            )
    ckpt = tmp_path / "bvlc_alexnet.pt"
    assert main(["import-caffe", str(files["v1"]), "--mean", str(files["mean"]), "--out", str(ckpt)]) == 0
    assert (
        main(
            [
                "evaluate",
                str(data),
                "--checkpoint",
                str(ckpt),
                "--devices",
                "cpu,cpu",
                "--no-ten-view",
                "--out",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    assert "top-1 error" in capsys.readouterr().out
    assert main(["predict", str(data / "val" / "c3" / "0.jpg"), "--checkpoint", str(ckpt)]) == 0
    from alexnet.commands.figures import make_figures  # the CLI's batch of 64 exceeds this dataset

    paths = make_figures(
        ckpt,
        data,
        out=tmp_path / "fig",
        n_images=2,
        n_queries=1,
        n_neighbours=2,
        max_train=4,
        thumb=32,
        batch_size=2,
    )
    assert paths[0] == tmp_path / "fig" / "figure3_conv1_kernels.png" and paths[0].is_file()
    ckpt.unlink()
