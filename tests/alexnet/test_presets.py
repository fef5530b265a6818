"""The presets against their provenance tables, the released values written out by hand, the 'dexp'
schedules against values computed by hand, and the preset table of docs/presets.md (issue 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alexnet.config import (
    PRESETS,
    Config,
    config_to_dict,
    explain,
    load_config,
    model_preset,
    provenance_markdown,
)
from alexnet.config.presets import PRESET_FILES, check_tables

ROOT = Path(__file__).resolve().parents[2]


def flat(cfg: Config) -> dict:
    return {f"{s}.{k}": v for s, values in config_to_dict(cfg).items() for k, v in values.items()}


def table_values(name: str) -> dict:
    return {k: list(v.value) if isinstance(v.value, tuple) else v.value for k, v in PRESETS[name].items()}


def test_every_table_key_is_a_config_key_and_every_value_has_a_source():
    check_tables()
    for name, table in PRESETS.items():
        for key, entry in table.items():
            assert entry.source.strip(), f"{name}: {key} has no source"
            if name == "cuda-convnet" and not entry.source.startswith("unused"):
                # a released file and key, never the non-existent notes cited before
                assert any(
                    f in entry.source
                    for f in (
                        "imagenet-2gpu-model.cfg",
                        "MultiGPU.md",
                        "layer.py",
                        "convdata.py",
                        "jpeg.cpp",
                        "layer.cu",
                        "layer.cuh",
                        "make-data.py",
                        "lr.cu",
                    )
                ), key


def test_tables_are_complete():
    import dataclasses

    from alexnet.config import SECTIONS

    model_keys = {f"model.{f.name}" for f in dataclasses.fields(SECTIONS["model"])} - {"model.preset"}
    for name, table in PRESETS.items():
        assert model_keys <= set(table), (name, sorted(model_keys - set(table)))  # every network value
    assert set(PRESETS["paper"]) == set(PRESETS["cuda-convnet"])  # the same rows


def test_paper_table_is_the_schema_defaults_and_the_paper_files():
    assert {k: flat(Config())[k] for k in PRESETS["paper"]} == table_values("paper")
    for path in PRESET_FILES["paper"]:
        cfg = flat(load_config(ROOT / path))
        assert {k: cfg[k] for k in PRESETS["paper"]} == table_values("paper"), path


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_file_and_model_preset_equal_the_table(name):
    for path in PRESET_FILES[name]:
        cfg = flat(load_config(ROOT / path))
        assert {k: cfg[k] for k in PRESETS[name]} == table_values(name), path
    model = config_to_dict(Config(model=model_preset(name)))["model"]
    assert {k: v for k, v in table_values(name).items() if k.startswith("model.")} == {
        f"model.{k}": model[k] for k in model if f"model.{k}" in PRESETS[name]
    }


def test_cuda_convnet_file_shows_the_released_values():
    """Written out from layer-params-imagenet-2gpu-model.cfg, layers-imagenet-2gpu-model.cfg,
    convdata.py, layer.cu/layer.cuh and the wiki's command line — not read from the table."""
    c = load_config(ROOT / "configs/cuda-convnet-2gpu.toml")
    assert (c.optim.schedule, c.optim.lr, c.optim.dexp_factor, c.optim.dexp_steps) == ("dexp", 0.02, 250.0, 4)
    assert (c.optim.lr * c.optim.bias_lr_mult, c.optim.dexp_bias_factor, c.optim.dexp_bias_steps) == (
        0.04,
        25.0,
        2,
    )
    assert (c.optim.momentum, c.optim.weight_decay, c.optim.bias_decay) == (0.9, 0.0005, False)
    assert (c.model.dropout, c.model.dropout_style, c.model.input_size) == (0.5, "inverted", 224)
    assert (c.data.lighting_std, c.data.lighting_formula, c.data.lighting_rescale, c.data.mean_window) == (
        0.1,
        "cuda-convnet",
        True,
        "centre",
    )
    assert (c.model.init_std, c.model.init_std_conv345, c.model.init_bias_one) == (0.01, 0.03, 1.0)
    assert (c.model.lrn_size, c.model.lrn_alpha, c.model.lrn_beta, c.model.lrn_k) == (5, 1e-4, 0.75, 2.0)
    assert c.model.lrn_alpha_per_size and c.model.lrn1_before_relu and c.model.conv2_spatial_norm
    assert (
        c.model.spatial_norm_size,
        c.model.spatial_norm_alpha,
        c.model.spatial_norm_beta,
        c.model.spatial_norm_k,
    ) == (5, 1e-3, 0.75, 1.0)
    assert c.model.fc8_placement == "a" and (c.train.epochs, c.train.batch_size) == (90, 128)


# ------------------------------------------------------------------------------ documentation
def test_the_documented_preset_table_is_the_provenance_table():
    page = (ROOT / "docs" / "presets.md").read_text()
    assert provenance_markdown() in page, (
        "docs/presets.md's preset table is stale: paste provenance_markdown()"
    )


def test_config_explain_prints_every_source():
    out = subprocess.run(
        [sys.executable, "-m", "alexnet", "config", "--explain"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert out == explain() + "\n"
    for name, table in PRESETS.items():
        for key, entry in table.items():
            assert entry.source in out, (name, key)


def test_no_mention_of_the_nonexistent_layers_145_files():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    bad = "layers-" + "145"
    hits = [p for p in tracked if (ROOT / p).is_file() and bad in (ROOT / p).read_text(errors="ignore")]
    assert hits == []
