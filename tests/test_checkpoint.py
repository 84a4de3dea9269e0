"""Checkpoints are untrusted input: weights-only unpickling, the wrappers users have, and a mismatch that
names the keys and leaves the model unchanged."""
import pickle
import re
from pathlib import Path

import pytest
import torch

import hrvit_kernels as hk
from hrvit_kernels.checkpoint import CheckpointMismatchError

ROOT = Path(__file__).resolve().parents[1]


def _small_model():
    return hk.create_model("hrvit_b1_segformer", num_classes=3)


class _Payload:
    """Unpickling this runs code: it creates the file at ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _small_model().state_dict(), "meta": _Payload(marker)}, path)
    model = _small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(pickle.UnpicklingError):
        hk.load_checkpoint(model, path)
    with pytest.raises(pickle.UnpicklingError):
        hk.create_model("hrvit_b1_segformer", num_classes=3, checkpoint=path)
    assert not marker.exists()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # Only a caller who names it gets the full unpickle (and the payload runs, as pickle does).
    hk.load_checkpoint(model, hk.read_checkpoint(path, trusted=True))
    assert marker.exists()


@pytest.mark.parametrize("wrap,fmt", [
    (lambda sd: sd, "state_dict"),
    (lambda sd: {"state_dict": sd, "meta": {"iter": 3}, "optimizer": {}}, "{'state_dict': ...} wrapper"),
    (lambda sd: {"model": sd, "epoch": 1}, "{'model': ...} wrapper"),
    (lambda sd: {f"module.{k}": v for k, v in sd.items()}, "state_dict with DDP 'module.' prefix"),
])
def test_wrappers_load_and_the_format_is_reported(tmp_path, wrap, fmt):
    source = _small_model()
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(source.state_dict()), path)
    model = _small_model()
    assert hk.load_checkpoint(model, path) == fmt
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())


def test_a_mismatch_lists_the_keys_and_leaves_the_model_unchanged():
    state = _small_model().state_dict()
    state.pop("decode_head.conv_seg.bias")
    state["decode_head.extra.weight"] = torch.ones(2)
    state["decode_head.conv_seg.weight"] = torch.ones(7, 256, 1, 1)
    model = _small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        hk.load_checkpoint(model, state)
    message = str(info.value)
    assert "1 missing (decode_head.conv_seg.bias)" in message
    assert "1 unexpected (decode_head.extra.weight)" in message
    assert "decode_head.conv_seg.weight: (7, 256, 1, 1) vs (3, 256, 1, 1)" in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_bad_checkpoint_arguments_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="'path'"):
        hk.read_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="no state_dict found"):
        hk.load_checkpoint(_small_model(), {"meta": {}})
    with pytest.raises(TypeError, match="must be a dict"):
        hk.load_checkpoint(_small_model(), [1, 2])


def test_no_torch_load_without_weights_only_in_the_package_or_readme():
    sources = [*ROOT.joinpath("hrvit_kernels").rglob("*.py"), ROOT / "README.md"]
    calls = [(p.name, m.group(0)) for p in sources for m in re.finditer(r"torch\.load\([^)]*\)", p.read_text())]
    assert calls, "the package reads checkpoints somewhere"
    assert all("weights_only" in call for _, call in calls), calls
