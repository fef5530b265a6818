"""``alexnet compare`` (alexnet.commands.compare) on tiny fabricated run directories."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from alexnet.cli import main
from alexnet.commands.compare import compare
from alexnet.config import Config, config_to_toml
from twogpu.checkpoint import save_checkpoint


def make_run(
    parent: Path, name: str, cfg: Config, epochs: list[dict] | None = None, evaluation: dict | None = None
) -> Path:
    run = parent / name
    run.mkdir(parents=True)
    cfg = replace(cfg, train=replace(cfg.train, name=name))
    (run / "config.toml").write_text(config_to_toml(cfg))
    if epochs is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    if evaluation is not None:
        (run / "eval.json").write_text(json.dumps(evaluation))
    return run


def epoch(n: int, val1: float, val5: float, train1: float = 0.3) -> dict:
    return {
        "epoch": n,
        "step": 10 * n,
        "images_seen": 1280 * n,
        "wall_time_s": 61.0 * n,
        "lr": 0.01,
        "train_loss": 1.0,
        "train_top1_err": train1,
        "val_top1_err": val1,
        "val_top5_err": val5,
    }


def evaluation(c1: float, c5: float, t1: float, t5: float) -> dict:
    return {
        "checkpoint": "x.pt",
        "images": 100,
        "centre": {"top1_err": c1, "top5_err": c5},
        "ten_view": {"top1_err": t1, "top5_err": t5},
    }


BASE = Config()


def no_lrn(cfg: Config = BASE) -> Config:
    return replace(cfg, model=replace(cfg.model, lrn=False))


@pytest.fixture
def two_runs(tmp_path):
    base = make_run(
        tmp_path,
        "base",
        BASE,
        [epoch(1, 0.60, 0.30), epoch(2, 0.50, 0.25)],
        evaluation(0.400, 0.180, 0.380, 0.170),
    )
    abl = make_run(
        tmp_path,
        "nolrn",
        no_lrn(),
        [epoch(1, 0.62, 0.33), epoch(2, 0.52, 0.27)],
        evaluation(0.414, 0.192, 0.395, 0.185),
    )
    return base, abl


def test_json_differences_two_runs(two_runs):
    base, abl = two_runs
    rows = json.loads(compare([abl, base], fmt="json"))  # order given does not decide the baseline
    assert [r["run"] for r in rows] == ["base", "nolrn"]
    b, a = rows
    assert b["ablation"] == "baseline" and a["ablation"] == "no-lrn"
    assert a["d_centre_top1"] == pytest.approx(0.014) and a["d_centre_top5"] == pytest.approx(0.012)
    assert a["d_ten_view_top1"] == pytest.approx(0.015) and a["d_ten_view_top5"] == pytest.approx(0.015)
    assert a["paper_d_top1"] == pytest.approx(0.014) and a["paper_d_top5"] == pytest.approx(0.012)
    assert (a["epochs"], a["images_seen"], a["wall_time_s"]) == (2, 2560, 122.0)
    assert b["d_centre_top1"] is None and b["centre_source"] == "eval.json"


def test_markdown_table(two_runs):
    text = compare(list(two_runs))
    lines = text.splitlines()
    assert lines[0].startswith("| run | ablation |")
    base_row = next(l for l in lines if l.startswith("| base |"))
    abl_row = next(l for l in lines if l.startswith("| nolrn |"))
    # Wilson intervals on 100 images, by hand: 40 % -> [30.94, 49.80], 18 % -> [11.70, 26.67]
    assert "40.00 [30.94, 49.80] / 18.00 [11.70, 26.67]" in base_row
    assert "38.00 [" in base_row and "| 1 |" in base_row  # one seed
    assert "| no-lrn |" in abl_row
    assert "+1.40 [" in abl_row and "+1.20 [" in abl_row  # centre difference in points
    assert abl_row.count(" ?") == 4  # 1.4 points on 100 images: unresolved
    assert "+1.50 [" in abl_row  # 10-view difference
    assert "one seed" in text
    assert "+1.4 / +1.2" in abl_row  # the paper's
    assert "2m02s" in abl_row and "2,560" in abl_row
    assert "| 2 of 90 |" in abl_row  # BASE plans the paper's 90 epochs; 2 are done


def test_csv_fields(two_runs):
    rows = list(csv.DictReader(io.StringIO(compare(list(two_runs), fmt="csv"))))
    assert rows[1]["ablation"] == "no-lrn"
    assert float(rows[1]["d_centre_top1"]) == pytest.approx(0.014)
    assert rows[0]["d_centre_top1"] == ""


def test_without_eval_json_uses_last_epoch(tmp_path):
    make_run(tmp_path, "base", BASE, [epoch(1, 0.60, 0.30), epoch(2, 0.50, 0.25)])
    cfg = replace(BASE, model=replace(BASE.model, pool_size=2))
    make_run(tmp_path, "pool", cfg, [epoch(1, 0.61, 0.31), epoch(2, 0.53, 0.26)])
    rows = json.loads(compare([tmp_path], fmt="json"))  # a parent folder stands for its runs
    assert rows[1]["ablation"] == "no-overlap"
    assert rows[1]["d_centre_top1"] == pytest.approx(0.03) and rows[1]["d_centre_top5"] == pytest.approx(0.01)
    assert rows[1]["d_ten_view_top1"] is None and rows[1]["centre_source"] == "metrics.jsonl"
    assert rows[1]["paper_claim"] == "+0.4 / +0.3"
    assert "* the last epoch's" in compare([tmp_path])


def test_centre_difference_compares_like_with_like(tmp_path):
    # The baseline has an evaluated checkpoint, the ablation only its epochs: the centre difference
    # then uses both runs' last-epoch validation errors, not one of each.
    make_run(tmp_path, "base", BASE, [epoch(1, 0.50, 0.25)], evaluation(0.40, 0.18, 0.38, 0.17))
    make_run(tmp_path, "nolrn", no_lrn(), [epoch(1, 0.53, 0.27)])
    rows = json.loads(compare([tmp_path], fmt="json"))
    assert rows[1]["d_centre_top1"] == pytest.approx(0.03) and rows[1]["d_centre_top5"] == pytest.approx(0.02)
    assert rows[1]["d_centre_source"] == "metrics.jsonl" and rows[1]["d_ten_view_top1"] is None


def test_each_ablation_is_named(tmp_path):
    variants = {
        "one-tower": replace(BASE, model=replace(BASE.model, towers=1)),
        "no-lighting": replace(BASE, data=replace(BASE.data, lighting_std=0.0)),
        "no-dropout": replace(BASE, model=replace(BASE.model, dropout=0.0)),
        "no-flip-crop": replace(BASE, data=replace(BASE.data, flip=False, random_crop=False)),
    }
    make_run(tmp_path, "base", BASE, [epoch(1, 0.5, 0.2)])
    for name, cfg in variants.items():
        make_run(tmp_path, name, cfg, [epoch(1, 0.5, 0.2)])
    rows = {r["run"]: r for r in json.loads(compare([tmp_path], fmt="json"))}
    assert {n: rows[n]["ablation"] for n in variants} == {n: n for n in variants}
    assert rows["one-tower"]["paper_claim"] == "+1.7 / +1.2"
    assert rows["no-lighting"]["paper_d_top1"] == pytest.approx(0.01)
    assert rows["no-dropout"]["paper_d_top1"] is None


def test_other_changes_are_flagged_and_get_no_paper_number(tmp_path):
    make_run(tmp_path, "base", BASE, [epoch(1, 0.5, 0.2)])
    cfg = no_lrn(replace(BASE, optim=replace(BASE.optim, lr=0.02), train=replace(BASE.train, log_every=7)))
    make_run(tmp_path, "mixed", cfg, [epoch(1, 0.55, 0.25)])
    rows = json.loads(compare([tmp_path], fmt="json"))
    assert rows[1]["ablation"] == "no-lrn"
    assert rows[1]["other_changes"] == "optim.lr=0.02"  # train.log_every is bookkeeping, ignored
    assert rows[1]["paper_claim"] == "" and rows[1]["paper_d_top1"] is None
    assert rows[1]["d_centre_top1"] == pytest.approx(0.05)


def test_baseline_choice(tmp_path):
    make_run(tmp_path, "a", BASE, [epoch(1, 0.5, 0.2)])
    make_run(tmp_path, "b", BASE, [epoch(1, 0.4, 0.2)])
    with pytest.raises(ValueError, match="--baseline"):
        compare([tmp_path])
    rows = json.loads(compare([tmp_path], baseline=tmp_path / "b", fmt="json"))
    assert rows[0]["run"] == "b" and rows[1]["ablation"] == "(other)"
    assert rows[1]["d_centre_top1"] == pytest.approx(0.1)


def test_cli_errors_are_clear(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "no config.toml" in capsys.readouterr().err
    run = make_run(tmp_path, "r", BASE, [epoch(1, 0.5, 0.2)])
    (run / "metrics.jsonl").write_text("{not json\n" + json.dumps(epoch(1, 0.5, 0.2)) + "\n")
    assert main(["compare", str(run)]) == 2
    assert "metrics.jsonl:1" in capsys.readouterr().err


def test_cli_prints_table(two_runs, capsys):
    assert main(["compare", *map(str, two_runs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[1]["ablation"] == "no-lrn"


def test_run_from_an_older_config_schema_is_still_compared(tmp_path, capsys):
    make_run(tmp_path, "base", BASE, [epoch(1, 0.5, 0.2)])
    old = make_run(tmp_path, "old", no_lrn(), [epoch(1, 0.6, 0.3)])
    with (old / "config.toml").open("a") as f:
        f.write("retired_key = 1\n")  # lands in [eval], the last section: unknown today
    rows = json.loads(compare([tmp_path], fmt="json"))
    assert rows[1]["ablation"] == "no-lrn" and rows[1]["d_centre_top1"] == pytest.approx(0.1)
    assert "read without validation" in capsys.readouterr().err


def test_checkpoint_config_wins_over_a_rewritten_config_toml(tmp_path, capsys):

    from alexnet.config import config_to_dict

    make_run(tmp_path, "base", BASE, [epoch(1, 0.5, 0.2)])
    run = make_run(tmp_path, "nolrn", no_lrn(), [epoch(1, 0.6, 0.3)])
    (run / "checkpoints").mkdir()
    save_checkpoint(
        {"model": {}, "config": config_to_dict(no_lrn()), "epoch": 1, "step": 10},
        run / "checkpoints" / "last.pt",
    )
    # config.toml later overwritten with another init (what the weights were NOT trained with)
    drifted = replace(no_lrn(), model=replace(no_lrn().model, init_std_conv345=0.03))
    (run / "config.toml").write_text(
        config_to_toml(replace(drifted, train=replace(drifted.train, name="nolrn")))
    )
    rows = json.loads(compare([tmp_path], fmt="json"))
    assert rows[1]["ablation"] == "no-lrn" and rows[1]["other_changes"] == ""
    assert "model.init_std_conv345" in capsys.readouterr().err


def _eval_n(c1: float, n: int = 250) -> dict:
    return {
        "checkpoint": "x.pt",
        "images": n,
        "centre": {"top1_err": c1, "top5_err": c1 / 4},
        "ten_view": {"top1_err": c1, "top5_err": c1 / 4},
    }


def test_seeds_are_grouped_averaged_and_their_spread_widens_the_interval(tmp_path):
    from alexnet.evaluation.intervals import difference_estimate, error_estimate

    base_errs, drop_errs, flip_errs = [0.04, 0.05, 0.06], [0.05, 0.07, 0.06], [0.30, 0.26, 0.28]
    for seed, (b, d, f) in enumerate(zip(base_errs, drop_errs, flip_errs)):
        sfx = "" if seed == 0 else f"-seed{seed}"
        cfg = replace(BASE, train=replace(BASE.train, seed=seed))
        make_run(tmp_path, f"base{sfx}", cfg, [epoch(1, b, b)], _eval_n(b))
        make_run(
            tmp_path,
            f"nodrop{sfx}",
            replace(cfg, model=replace(cfg.model, dropout=0.0)),
            [epoch(1, d, d)],
            _eval_n(d),
        )
        make_run(
            tmp_path,
            f"noflip{sfx}",
            replace(cfg, data=replace(cfg.data, flip=False, random_crop=False)),
            [epoch(1, f, f)],
            _eval_n(f),
        )
    rows = {r["run"]: r for r in json.loads(compare([tmp_path], fmt="json"))}
    assert set(rows) == {"base", "nodrop", "noflip"}  # -seedK runs joined to their recipe
    assert rows["base"]["seeds"] == 3 and rows["base"]["runs"] == ["base", "base-seed1", "base-seed2"]
    e = error_estimate(base_errs, 250)
    assert rows["base"]["centre_top1_err"] == pytest.approx(0.05)
    assert rows["base"]["ci"]["centre_top1_err"] == pytest.approx([e.lo, e.hi])
    assert rows["base"]["spread"]["centre_top1_err"] == pytest.approx(0.01)
    d = difference_estimate(drop_errs, base_errs, 250, 250)
    assert rows["nodrop"]["d_centre_top1"] == pytest.approx(0.01)
    assert rows["nodrop"]["ci"]["d_centre_top1"] == pytest.approx([d.lo, d.hi])
    assert rows["nodrop"]["resolved"]["d_centre_top1"] is False  # 1 point on 250 images x 3 seeds: noise
    assert rows["noflip"]["resolved"]["d_centre_top1"] is True  # 23 points: resolved
    text = compare([tmp_path])
    noflip = next(line for line in text.splitlines() if line.startswith("| noflip |"))
    nodrop = next(line for line in text.splitlines() if line.startswith("| nodrop |"))
    assert "| 3 |" in noflip and "+23.00 [" in noflip and " ?" not in noflip.split("|")[10]
    assert " ?" in nodrop.split("|")[10]
    assert "one seed" not in text


def test_csv_carries_the_intervals(two_runs):
    rows = list(csv.DictReader(io.StringIO(compare(list(two_runs), fmt="csv"))))
    lo, hi = float(rows[0]["centre_top1_err_lo"]), float(rows[0]["centre_top1_err_hi"])
    assert (round(lo, 4), round(hi, 4)) == (0.3094, 0.4980)  # Wilson, 40 of 100
    assert rows[1]["d_centre_top1_resolved"] == "False"
