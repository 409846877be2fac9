"""A new training run never replaces an earlier one: refused unless --overwrite (or --resume) says so."""

import pytest

import train.loop
from factory import records, tiny_args
from sunet_deploy.cli import EXIT_USAGE
from train.__main__ import main
from train.rundir import RUN_FILES


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_second_run_into_the_same_folder_is_refused_and_changes_nothing(tmp_path, capsys):
    assert main(tiny_args(tmp_path)) == 0
    before = snapshot(tmp_path / "run")
    assert {"best.safetensors", "metrics.jsonl"} <= before.keys()
    capsys.readouterr()
    assert main(tiny_args(tmp_path, "--iterations 2")) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "new --out-dir" in err and "--overwrite" in err
    assert snapshot(tmp_path / "run") == before


@pytest.mark.parametrize("name", RUN_FILES)
def test_any_run_file_is_refused_before_the_data_is_read(tmp_path, monkeypatch, name):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / name).write_bytes(b"an earlier run")
    monkeypatch.setattr(train.loop, "training_datasets", lambda *a: pytest.fail("slow work before the refusal"))
    assert main(tiny_args(tmp_path)) == EXIT_USAGE
    assert snapshot(tmp_path / "run") == {name: b"an earlier run"}


def test_overwrite_replaces_the_earlier_run_and_starts_a_fresh_log(tmp_path):
    assert main(tiny_args(tmp_path, "--stop-at-step 2")) == 0
    assert main(tiny_args(tmp_path, "--overwrite --iterations 3 --val-every 3")) == 0
    events = [r["event"] for r in records(tmp_path / "run")]
    assert "stopped" not in events and events.count("end") == 1
    assert [r["step"] for r in records(tmp_path / "run") if r["event"] == "train"] == [1, 2, 3]


def test_overwrite_with_bad_input_keeps_the_earlier_run(tmp_path):
    assert main(tiny_args(tmp_path, "--iterations 2")) == 0
    before = snapshot(tmp_path / "run")
    assert main(tiny_args(tmp_path, "--overwrite --batch-size 32")) == EXIT_USAGE  # too few images
    assert snapshot(tmp_path / "run") == before


def test_resume_and_overwrite_exclude_each_other(tmp_path, capsys):
    assert main(tiny_args(tmp_path, "--resume --overwrite")) == EXIT_USAGE
    assert "--resume" in capsys.readouterr().err
