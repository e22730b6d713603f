"""Shared test set-up: fast mode, one CPU thread per process, the embedded model prepared once."""
import os

import pytest

# Every notebook kernel and subprocess started by the tests inherits these.
os.environ.setdefault("INFERLAB_FAST", "1")
os.environ.setdefault("INFERLAB_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
