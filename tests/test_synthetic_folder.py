"""`python -m sunet_deploy.data` writes synthetic samples that load back exactly as a folder dataset."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from sunet_deploy.data import FolderSegmentation, SyntheticSegmentation

REPO = Path(__file__).resolve().parents[1]


def write_folder(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "sunet_deploy.data", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip


def test_written_folder_loads_back_identically(tmp_path):
    root = tmp_path / "synthetic"
    done = write_folder(str(root), "--synthetic-samples", "3", "--synthetic-size", "40x56", "--num-classes", "5", "--seed", "4")
    assert done.returncode == 0, done.stderr
    source = SyntheticSegmentation(num_samples=3, size=(40, 56), num_classes=5, seed=4, split="val")
    folder = FolderSegmentation(root)  # the classes come from root/classes.txt
    assert len(folder) == 3 and folder.classes == source.classes
    for index in range(3):
        image, label = folder[index]
        expected_image, expected_label = source[index]
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(label, expected_label)
        assert len(np.unique(label)) > 1


def test_bad_arguments_give_one_line_errors(tmp_path):
    done = write_folder(str(tmp_path), "--num-classes", "40")
    assert done.returncode == 2
    assert done.stderr.startswith("error: num_classes must be in")
