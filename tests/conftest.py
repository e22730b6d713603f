"""Shared test set-up: fast mode, one CPU thread per process, the embedded model prepared once."""
import os

import pytest

# Every notebook kernel and subprocess started by the tests inherits these.
os.environ.setdefault("INFERLAB_FAST", "1")
os.environ.setdefault("INFERLAB_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same torch seed, so a draw that happens to sit near a tolerance
    fails every run (and gets fixed) instead of once in a while in CI."""
    import torch
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def embedded_model_dir():
    """The converted embedded model (converted once; safe across xdist workers)."""
    from inferlab.lab.models import prepare_default_model
    return prepare_default_model()


@pytest.fixture(scope="session")
def model_and_tokenizer(embedded_model_dir):
    from inferlab.lab.bench import pin_threads
    from inferlab.lab.models import load_model
    pin_threads()
    return load_model()


@pytest.fixture()
def scratch_course(tmp_path):
    """A scratch course root holding copies of some of the repository's lessons:
    ``scratch_course("00_why_inference_is_slow", parts=("solutions",))`` -> its path."""
    import shutil

    from autograder.course import REPOSITORY

    skip = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")

    def make(*lessons: str, parts=("lessons", "solutions", "course")):
        root = tmp_path / "course-root"
        for lesson in lessons:
            for part in parts:
                if (REPOSITORY / part / lesson).is_dir():
                    shutil.copytree(REPOSITORY / part / lesson, root / part / lesson, ignore=skip)
        root.mkdir(exist_ok=True)
        return root
    return make


@pytest.fixture(scope="session")
def tiny_llama():
    """Factory of small random Llama models: ``tiny_llama(seed=0, num_hidden_layers=3, ...)``.

    Real transformers classes at toy sizes, for unit tests of the compression code (fast, no
    download). Keyword arguments override the ``LlamaConfig`` defaults below.
    """
    def make(seed: int = 0, **overrides):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
        torch.manual_seed(seed)
        config = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True)
        config.update(overrides)
        return LlamaForCausalLM(LlamaConfig(**config)).eval()
    return make


@pytest.fixture(scope="session")
def tiny_engine_weights():
    """Factory of the engine's tiny random Llama (``LlamaWeights``), the model of test_engine.py:
    ``tiny_engine_weights(device="cpu")``. 2 layers, 4 query and 2 KV heads of 16, vocabulary 97,
    end-of-sequence token 1; std 0.3 makes greedy decoding free of near-ties."""
    def make(device: str = "cpu"):
        import torch

        from inferlab.engine import LlamaWeights, ModelConfig
        config = ModelConfig(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2,
                             head_dim=16, intermediate_size=128, vocab_size=97, max_position=256,
                             eos_token_ids=(1,))
        return LlamaWeights.random(config, dtype=torch.float32, device=device, seed=0, std=0.3)
    return make
