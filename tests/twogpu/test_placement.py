"""Resolving device requests for the two towers."""

import pytest
import torch

from twogpu import feed, resolve_devices


def test_explicit_cpu_pair():
    d = resolve_devices(["cpu", "cpu"])
    assert d.pair == (torch.device("cpu"), torch.device("cpu")) and d.same


def test_auto_without_gpu_says_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d = resolve_devices("auto")
    assert d.a.type == "cpu" and d.b.type == "cpu" and "no GPU" in d.reason


def test_auto_with_one_or_two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_devices("auto").pair == (torch.device("cuda:0"), torch.device("cuda:0"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert resolve_devices("auto", offset=2).pair == (torch.device("cuda:2"), torch.device("cuda:3"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_devices(["cuda:0", "cuda:1"])


@pytest.mark.parametrize("bad", ["gpu", ["cpu"], ["cpu", "cpu", "cpu"]])
def test_malformed_requests(bad):
    with pytest.raises(ValueError, match="devices"):
        resolve_devices(bad)


def test_feed_gives_each_tower_the_whole_batch():
    x = torch.randn(2, 3)
    xa, xb = feed(x, (torch.device("cpu"), torch.device("cpu")))
    assert torch.equal(xa, x) and torch.equal(xb, x)
