"""inferlab.lab.settings: every run-time switch comes from the environment, read in one place."""
import os

import pytest

from inferlab.lab import settings


def test_fast_and_grading_modes(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("INFERLAB_FAST", "0")
    assert not settings.fast_mode() and not settings.grading()
    assert settings.pick(128, 16) == 128
    monkeypatch.setenv("INFERLAB_FAST", "1")
    assert settings.fast_mode() and settings.pick(128, 16) == 16
    monkeypatch.setenv("INFERLAB_FAST", "no")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert settings.grading() and settings.fast_mode(), "grading implies fast mode"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path / "c"))
    assert settings.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("INFERLAB_CACHE")
    assert settings.cache_dir().name == "inferlab"


def test_threads(monkeypatch):
    monkeypatch.setenv("INFERLAB_THREADS", "3")
    assert settings.threads() == 3
    monkeypatch.delenv("INFERLAB_THREADS")
    assert settings.threads() == min(len(os.sched_getaffinity(0)), 8)
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("INFERLAB_THREADS", bad)
        with pytest.raises(ValueError, match="INFERLAB_THREADS"):
            settings.threads()



def test_device_policy(monkeypatch):
    """auto follows PyTorch; cpu is honoured everywhere; cuda without a GPU says how to fix it."""
    import torch
    monkeypatch.delenv("INFERLAB_DEVICE", raising=False)
    assert settings.device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("INFERLAB_DEVICE", "CPU")
    assert settings.device() == "cpu"
    monkeypatch.setenv("INFERLAB_DEVICE", "tpu")
    with pytest.raises(ValueError, match="INFERLAB_DEVICE must be one of auto, cpu, cuda"):
        settings.device()
    monkeypatch.setenv("INFERLAB_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="sees no GPU"):
        settings.device()
    monkeypatch.setenv("INFERLAB_DEVICE", "auto")
    assert settings.device() == "cpu"
