"""Every command a user can type (issue 17, item 6): the top-level help and version, each command's
help (taken from the table in ``alexnet.cli``, so a new command is covered without editing this
file), and each numeric argument of each command given a bad value: exit 2, one line, no traceback."""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import alexnet
from alexnet.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code


def _options(command: str) -> list[argparse.Action]:
    """The arguments of ``command`` as its parser holds them."""
    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[command]._actions if not isinstance(a, argparse._HelpAction)]


def _is_numeric(action: argparse.Action) -> bool:
    """The parser turns this argument into a number (told by what its type makes of "7")."""
    return action.type is not None and isinstance(action.type("7"), (int, float))


# ------------------------------------------------------------------------------------ top level
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command(flag, capsys):
    assert _exit_code([flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: alexnet")
    for name in COMMANDS:
        assert f"\n    {name} " in out or f"\n    {name}\n" in out, name
    assert "95 % intervals" in out  # the help string with a '%' that once crashed `alexnet --help`


def test_plain_alexnet_lists_the_commands_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_version(capsys):
    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"alexnet {alexnet.__version__}\n"


def test_python_dash_m_alexnet_help():
    r = subprocess.run(
        [sys.executable, "-m", "alexnet", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert all(name in r.stdout for name in COMMANDS)


def test_console_script_help():
    script = shutil.which("alexnet", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the `alexnet` console script is not installed beside this Python")
    r = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "import-caffe" in r.stdout


# -------------------------------------------------------------------------------- each command
@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_help(command, capsys):
    """Renders (a bare '%' in a help string would raise here), and documents every argument."""
    assert _exit_code([command, "--help"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"usage: alexnet {command}") and captured.err == ""
    for nothing in ("None", "False", "[]"):  # defaults shown only where there is one
        assert f"(default: {nothing})" not in captured.out
    for action in _options(command):
        assert action.help, f"alexnet {command}: {'/'.join(action.option_strings) or action.dest} has no help"


# ------------------------------------------------------------------------ bad numeric values
# Beyond the values refused for every number (negative, fractional, not a number): each argument's
# smallest (or largest) refused value, from what the argument means.
EDGES = {
    ("train", "--require-gpus"): [],
    ("figures", "--images"): ["0"],
    ("figures", "--queries"): ["0"],
    ("figures", "--neighbours"): ["0"],
    ("figures", "--max-train"): [],  # 0: all
    ("figures", "--seed"): [],
    ("crossings", "--batch-size"): ["0"],
    ("crossings", "--replicas"): [],  # 0: none shown
    ("demo-data", "--seed"): [],
    ("demo-data", "--train-per-class"): ["0"],
    ("demo-data", "--val-per-class"): ["0"],
    ("demo-data", "--workers"): ["-2"],  # -1: one per core
    ("prepare", "--resize"): ["0"],
    ("prepare", "--workers"): ["-2"],
    ("prepare", "--quality"): ["0", "101"],
    ("stats", "--sample"): [],  # 0: all
    ("stats", "--seed"): [],
    ("stats", "--image-size"): ["0"],
    ("stats", "--workers"): ["-2"],
    ("evaluate", "--batch-size"): ["0"],
    ("evaluate", "--limit"): ["0"],
    ("predict", "-k"): ["0"],
}


def _numeric_options() -> list[tuple[str, str]]:
    return [
        (command, action.option_strings[0])
        for command in COMMANDS
        for action in _options(command)
        if _is_numeric(action)
    ]


def test_every_numeric_argument_has_its_edges_listed():
    """A new numeric argument is tested once its refused values are written down above."""
    assert sorted(_numeric_options()) == sorted(EDGES)


def _bad_values() -> list[tuple[str, str, str]]:
    cases = []
    for command, option in _numeric_options():
        for value in ["-5", "2.5", "many", *EDGES.get((command, option), [])]:
            cases.append(pytest.param(command, option, value, id=f"{command} {option} {value}"))
    return cases


@pytest.mark.parametrize("command, option, value", _bad_values())
def test_bad_numeric_value_is_one_line_and_exit_2(command, option, value, capsys):
    assert _exit_code([command, option, value]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"alexnet {command}: error: argument {option}"), err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["figures", "DATA", "--checkpoint", "x.pt", "--images", "-3"], "must be at least 1, got -3"),
        (["demo-data", "--train-per-class", "-1"], "must be at least 1, got -1"),
        (["crossings", "--batch-size", "-5"], "must be at least 1, got -5"),
        (["crossings", "--batch-size", "0"], "must be at least 1, got 0"),
        (["crossings", "--replicas", "-2"], "must be at least 0, got -2"),
        (["prepare", "SRC", "DST", "--quality", "101"], "must be between 1 and 100, got 101"),
        (["stats", "DATA", "--workers", "-3"], "expected -1 (one per core) or a number >= 0, got -3"),
    ],
)
def test_the_issues_bad_values_say_what_is_expected(argv, message, capsys):
    """The values the issue found drawing all but 3 images, making "-10 images" or printing 0 B."""
    assert _exit_code(argv) == 2
    assert message in capsys.readouterr().err


def test_figures_takes_devices_as_evaluate_does(capsys):
    """`--devices A,B` as evaluate takes it (`--device` still works); a malformed pair is refused."""
    for argv in (["--devices", "cpu,cpu"], ["--device", "cpu"], ["--devices", "auto"]):
        args = build_parser("figures").parse_args(["figures", "DATA", "--checkpoint", "x.pt", *argv])
        assert args.devices in (["cpu", "cpu"], "auto")
    assert _exit_code(["figures", "DATA", "--checkpoint", "x.pt", "--devices", "cpu,cpu,cpu"]) == 2
    assert "argument --devices" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- messages
def test_a_file_where_a_folder_belongs_says_so(tmp_path, capsys):
    """Not "does not exist": the path is there, but it is a file."""
    a_file = tmp_path / "imagenet.tar"
    a_file.write_bytes(b"")
    (tmp_path / "root" / "val").mkdir(parents=True)
    (tmp_path / "root" / "train").write_bytes(b"")  # a dataset root whose train/ is a file
    cases = [
        (["train", str(a_file), "--set", 'train.devices=["cpu","cpu"]'], f"dataset root {a_file}"),
        (["stats", str(a_file)], f"training folder {a_file}"),
        (["stats", str(tmp_path / "root" / "train")], f"training folder {tmp_path / 'root' / 'train'}"),
        (["demo-data", "--out", str(a_file)], f"--out {a_file}"),
        (["demo-data", "--out", str(a_file / "demo")], f"--out {a_file / 'demo'}: {a_file}"),
    ]
    for argv, where in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{where} is a file, not a folder" in err and len(err.splitlines()) == 1, err


def test_import_caffe_names_every_missing_file(tmp_path, capsys):
    model, mean = tmp_path / "bvlc_alexnet.caffemodel", tmp_path / "imagenet_mean.binaryproto"
    out = str(tmp_path / "out.pt")
    assert main(["import-caffe", str(model), "--mean", str(mean), "--out", out]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"{model} not found" in err and f"{mean} not found" in err, err
    model.mkdir()
    assert main(["import-caffe", str(model), "--out", out]) == 2
    assert f"{model} is a folder, not a file" in capsys.readouterr().err


def test_help_shows_the_defaults(capsys):
    assert _exit_code(["crossings", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "images per step (the paper's 128), for the bytes per step (default: 128)" in out
