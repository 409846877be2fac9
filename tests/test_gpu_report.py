"""benchmarks.gpu_report: a clear no-GPU answer that writes nothing, and the bandwidth-floor byte count."""

import torch
from torch import nn

from benchmarks import gpu_report


def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_report.main(["--output", str(tmp_path / "gpu"), "--workdir", str(tmp_path / "work")]) == 0
    assert "no GPU here" in capsys.readouterr().out
    assert not (tmp_path / "gpu").exists() and not (tmp_path / "work").exists()


def test_minimum_traffic_of_a_hand_computable_model():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    weights = (3 * 8 * 9 + 8) + (8 * 4 + 4)
    activations = (3 + 8) * 16 * 16 + (8 + 4) * 16 * 16
    assert gpu_report.min_traffic_bytes(model, (1, 3, 16, 16)) == 2 * (weights + activations)
