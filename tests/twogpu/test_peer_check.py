"""twogpu.peer_check: the guard on GPU-to-GPU copies (issue 18, item 5), on the CPU with stand-in
copies that carry real bytes (a real two-GPU round trip is the CUDA-marked test at the end)."""

import pytest
import torch

from twogpu import peer_check

CPU = torch.device("cpu")
A, B = torch.device("cuda:0"), torch.device("cuda:1")


class StandIn:
    """``hop(t, source, target)`` on the host: a real copy, every hop recorded; ``corrupt`` changes
    the bytes of copies between two different GPUs (what the faulty machines do)."""

    def __init__(self, corrupt=None):
        self.corrupt = corrupt
        self.hops = []

    def __call__(self, t, source, target):
        self.hops.append((source, target))
        out = t.clone()
        if self.corrupt is not None and source.type == target.type == "cuda" and source != target:
            out = self.corrupt(out)
        return out


def change_one_byte(t):
    t[12345] += 1  # (an XOR would undo itself on the way back)
    return t


def zeros(t):  # the typical symptom: the copy "succeeds" and the target holds zeros
    return torch.zeros_like(t)


def test_pattern_is_seeded_bytes_that_use_every_value():
    p = peer_check.pattern(4096)
    assert p.dtype == torch.uint8 and p.numel() == 4096
    assert torch.equal(p, peer_check.pattern(4096)) and not torch.equal(p, peer_check.pattern(4096, seed=1))
    assert len(p.unique()) == 256


def test_round_trip_goes_directly_and_through_the_host_at_every_hop():
    hop = StandIn()
    sent = peer_check.pattern(64)
    direct, staged = peer_check.round_trip(sent, A, B, hop)
    assert hop.hops == [
        (CPU, A),  # the pattern onto a
        (A, B),  # direct: a -> b -> a -> host
        (B, A),
        (A, CPU),
        (A, CPU),  # staged: a -> host -> b -> host -> a -> host
        (CPU, B),
        (B, CPU),
        (CPU, A),
        (A, CPU),
    ]
    assert torch.equal(direct, sent) and torch.equal(staged, sent)


def test_compare_finds_the_first_wrong_byte_and_which_path_failed():
    sent = peer_check.pattern(1000)
    assert peer_check.compare(sent, sent.clone(), sent.clone()) is None
    bad = sent.clone()
    bad[700] += 1
    bad[900] += 1
    assert peer_check.compare(sent, bad, sent.clone()) == (
        "the direct copy differs from the same data sent through the host "
        "(2 of 1000 bytes differ, the first at byte 700)"
    )
    assert peer_check.compare(sent, sent.clone(), bad).startswith("even the copy through the host")
    assert "999 bytes came back instead of 1000" in peer_check.compare(sent, sent[:999], sent.clone())


def test_towers_not_on_two_gpus_are_not_checked():
    hop = StandIn(corrupt=zeros)
    for a, b in ((CPU, CPU), (A, A), (A, CPU)):
        assert peer_check.check_peer_copies(a, b, hop=hop) is None
    assert hop.hops == []


@pytest.fixture
def peer(monkeypatch):
    """``torch.cuda.can_device_access_peer`` answering from a set of (i, j) pairs."""
    pairs = {(0, 1), (1, 0)}
    monkeypatch.setattr(torch.cuda, "can_device_access_peer", lambda i, j: (i, j) in pairs)
    return pairs


def test_intact_copies_pass_with_a_line_naming_the_peer_access(peer):
    line = peer_check.check_peer_copies(A, B, hop=StandIn())
    assert "cuda:0 -> cuda:1 -> cuda:0 intact" in line and "peer access on" in line
    peer.discard((1, 0))
    assert "peer access off" in peer_check.check_peer_copies(A, B, hop=StandIn())


@pytest.mark.parametrize("corrupt", [change_one_byte, zeros], ids=["one-byte", "zeros"])
def test_corrupting_copies_stop_with_the_cause_and_the_remedy(peer, corrupt):
    with pytest.raises(peer_check.PeerCopyError) as e:
        peer_check.check_peer_copies(A, B, hop=StandIn(corrupt=corrupt))
    msg = str(e.value)
    assert "\n" not in msg
    assert "wrong data" in msg and "cuda:0 -> cuda:1 -> cuda:0" in msg and "peer access on" in msg
    for issue in ("84803", "87363", "96600", "132397", "157398"):
        assert issue in msg
    assert "IOMMU" in msg and "iommu=pt" in msg and "ACS" in msg
    assert "train.devices" in msg and "make train-1gpu" in msg


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_real_round_trip_between_two_gpus():
    line = peer_check.check_peer_copies(A, B)
    assert "intact" in line
