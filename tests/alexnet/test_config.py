"""Configs: TOML + --set, validated before any work, every field documented, round trip."""

import dataclasses

import pytest

from alexnet.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    explain,
    load_config,
    parse_override,
)


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_are_the_paper():
    cfg = load_config()
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.01, 0.9, 0.0005)
    assert (cfg.model.lrn_k, cfg.model.lrn_size, cfg.model.lrn_alpha, cfg.model.lrn_beta) == (
        2.0,
        5,
        1e-4,
        0.75,
    )
    assert (cfg.model.pool_size, cfg.model.pool_stride, cfg.model.dropout) == (3, 2, 0.5)
    assert cfg.train.batch_size == 128 and cfg.model.input_size == 224 and cfg.data.image_size == 256


def test_preset_then_overrides(tmp_path):
    p = write(tmp_path, '[model]\npreset = "cuda-convnet"\nlrn = false\n')
    cfg = load_config(p, ["optim.lr=0.02", "train.devices=['cpu', 'cpu']"])
    assert cfg.model.lrn_alpha_per_size and cfg.model.conv2_spatial_norm and not cfg.model.lrn
    assert cfg.model.init_std_conv345 == 0.03
    assert cfg.optim.lr == 0.02 and cfg.train.devices == ("cpu", "cpu")


@pytest.mark.parametrize(
    "text,message",
    [
        ("[model]\nlrn_sizee = 5\n", "model.lrn_sizee"),
        ("[modle]\n", "unknown section"),
        ("[optim]\nlr = 'fast'\n", "optim.lr: expected a number"),
        ("[model]\nlrn = 1\n", "model.lrn: expected true or false"),
        ("[train]\nbatch_size = 1.5\n", "train.batch_size: expected an integer"),
        ("[model]\nlrn_size = 4\n", "lrn_size must be odd"),
        ("[model]\ndropout_style = 'scaled'\n", "expected one of"),
        ("[train]\ndevices = ['cpu']\n", "two devices"),
        ("[model]\ninput_size = 225\n", r"model.input_size: expected one of \[224, 227\]"),
        ("[model]\ninput_size = 227\n[data]\nimage_size = 200\n", "exceeds data.image_size"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["lr0.1"])
    with pytest.raises(ConfigError, match="section.key"):
        load_config(None, ["lr=0.1"])
    with pytest.raises(ConfigError, match="optim.nope"):
        load_config(None, ["optim.nope=1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_a_saved_config_with_a_key_of_no_field_is_refused_naming_it():
    """A saved config (a checkpoint's, a run's config.toml) is read by the same rules as a preset:
    a key the schema does not have is an error naming it, never silently moved or dropped."""
    saved = config_to_dict(Config())
    saved["data"]["crop_size"] = 227
    with pytest.raises(ConfigError, match=r"<checkpoint>: unknown key\(s\) data.crop_size"):
        config_from_dict(saved, "<checkpoint>")
    with pytest.raises(ConfigError, match="unknown key.*data.crop_size"):
        load_config(None, ["data.crop_size=227"])


def test_toml_strings_round_trip_every_character():
    import tomllib

    from alexnet.config import toml_string, toml_value

    for text in ['plain', 'a "quoted" path', 'back\\slash\\', 'tab\tnew\nline\r', '\x00\x1f\x7f', 'ünï ☃']:
        assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text
    value = [1, 2.5, True, "x\"y", [3]]
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_override_values_are_toml():
    assert parse_override("optim.lr=1e-3") == (["optim", "lr"], 0.001)
    assert parse_override("train.name=my-run") == (["train", "name"], "my-run")
    assert parse_override("data.flip=false") == (["data", "flip"], False)


def test_resolved_toml_round_trips(tmp_path):
    cfg = load_config(None, ["model.preset=cuda-convnet", "optim.milestones=[10, 20]", "train.name=x"])
    p = write(tmp_path, config_to_toml(cfg), "resolved.toml")
    assert load_config(p) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_configs_are_frozen_and_every_field_documented():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0  # type: ignore[misc]
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            assert f.metadata.get("doc"), f"{section.name}.{f.name} has no documentation"
    assert "lrn_alpha_per_size" in explain()
