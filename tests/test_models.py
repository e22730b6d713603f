"""inferlab.lab.models: the embedded model, its verified cache, and clear errors for bad names."""
import os
import shutil
import time

import pytest
import torch

from inferlab.lab import models
from inferlab.lab.models import DEFAULT_MODEL, ModelUnavailableError, cache_problem, load_model


def test_default_model_is_smollm2(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    assert model.config.num_hidden_layers == 30 and model.config.num_key_value_heads == 3
    assert models.parameter_count(model) == 134_515_008
    assert next(model.parameters()).dtype == torch.float32
    ids = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.input_ids.shape[1]:])


def test_bf16_load(embedded_model_dir):
    model, _ = load_model(dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert models.weight_bytes(model) < 300e6


def test_cache_is_verified(embedded_model_dir):
    assert cache_problem(embedded_model_dir) is None


@pytest.mark.parametrize("bad_name", ["no-such-org/no-such-model-xyz", "gpt-17-ultra"])
def test_unknown_model_offline_fails_fast_and_writes_nothing(bad_name, tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as error:
        load_model(bad_name)
    assert time.perf_counter() - start < 30  # generous: "at once", not after network time-outs
    assert DEFAULT_MODEL in str(error.value) and bad_name in str(error.value)
    assert not (tmp_path / "cache").exists()


def test_empty_name_is_rejected():
    with pytest.raises(ValueError):
        load_model("  ")


def _copy_cache(source, tmp_path):
    target = tmp_path / "cache" / "models" / source.name
    shutil.copytree(source, target)
    return target


@pytest.mark.slow
def test_corrupted_or_partial_cache_is_detected_and_rebuilt(embedded_model_dir, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path / "cache"))
    target = _copy_cache(embedded_model_dir, tmp_path)
    assert models.converted_dir() == target and cache_problem(target) is None

    # Same size, one flipped byte: only the checksum can tell.
    weights = target / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    models._VERIFIED.clear()
    assert "corrupted" in cache_problem(target)

    # Truncated file.
    with open(weights, "r+b") as handle:
        handle.truncate(1000)
    assert "wrong size" in cache_problem(target)

    # A conversion that never finished leaves no manifest.
    (target / models.MANIFEST).unlink()
    assert "no manifest" in cache_problem(target)

    # Loading rebuilds it instead of loading the broken files.
    model, _ = load_model()
    assert cache_problem(target) is None
    assert models.parameter_count(model) == 134_515_008
    assert not list(target.parent.glob(".*partial*"))


def test_unreadable_manifest_is_a_problem(tmp_path):
    (tmp_path / models.MANIFEST).write_text("{not json")
    assert cache_problem(tmp_path) == "the manifest is unreadable"


def test_the_lessons_model_is_one_setting(monkeypatch, tmp_path):
    """INFERLAB_MODEL picks the model of every ``load_model()``; short names map to hub ids; each
    choice is labelled, and the embedded one says its weights were 4-bit."""
    from inferlab.lab.models import LARGER_MODELS, describe
    from inferlab.lab.settings import model_name
    monkeypatch.delenv("INFERLAB_MODEL", raising=False)
    assert model_name() == DEFAULT_MODEL and "Q4_1" in describe()
    monkeypatch.setenv("INFERLAB_MODEL", "SmolLM2-360M-Instruct")
    assert describe() == f"{LARGER_MODELS['SmolLM2-360M-Instruct']} from the model hub " \
                         "(weights as published)"
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HuggingFaceTB/SmolLM2-360M-Instruct"):
        load_model()                                 # the setting, resolved to its hub id
    assert describe(str(tmp_path)).startswith("local model folder")
