"""``EngineConfig``: every setting of the engine in one object, checked in one place (05-09).

An engine is a handful of parts - a KV cache (05), a block manager (07), a scheduler (06), a model
runner with an attention backend (05, 09) and a sampler (05, 08) - and each lesson looks at one of
them. ``EngineConfig`` says how to build them. Its plug-in points let a lesson run the real engine
with a part the student wrote:

=====================  ======  ===================================================================
field                  lesson  what it takes
=====================  ======  ===================================================================
``block_manager``      07      a class or factory ``(num_blocks, block_size) -> manager`` whose
                               objects have ``can_allocate``, ``allocate``, ``can_append``,
                               ``append_slot`` (returns copy-on-write pairs), ``free``,
                               ``num_free_blocks`` and ``num_used_blocks``
                               (``BLOCK_MANAGER_API``); default ``BlockManager``
``schedule_step``      06      a function ``(scheduler) -> (sequences, is_prefill)``: one
                               continuous-batching decision over ``scheduler.waiting`` /
                               ``scheduler.running``; default ``scheduler.continuous_step``
``sampler``            05, 08  a callable ``(logits [B, vocab], params_list, seq_ids) -> token
                               ids`` (an optional ``forget(seq_id)`` is called when a request
                               ends); default ``Sampler(seed)``
``attention_backend``  07, 09  ``"auto" | "triton" | "cpu" | "sdpa" | "fused" | "math"`` or an
                               ``AttentionBackend`` (see ``attention``; "cpu" is the C++
                               kernels of ``cpu_kernels``)
=====================  ======  ===================================================================

``chunked_prefill=True`` (lesson 06; off by default) cuts long prompts into chunks of at most
``prefill_chunk_tokens`` prompt tokens, each computed in the same step as one token of every
running sequence (``scheduler.chunked_step``). It uses the built-in scheduler and block manager, so
it cannot be combined with the ``schedule_step`` and ``block_manager`` plug-ins.

``prepack_weights`` (lesson 06): on a CPU, each weight matrix is copied once into the blocked
layout oneDNN's kernels read (``packed_weights``), instead of on every matrix multiply. ``None``
packs bfloat16 weights, where the result is exactly ``F.linear``'s; ``True`` also packs float32.

``gemv=True`` (lesson 09; a GPU with Triton, fp16/bf16): batch-1 decode steps multiply through
``gemv``'s matrix-vector kernel, whose tiles are timed against cuBLAS for each weight shape when
the engine is built (inside a CUDA graph, over the model's own matrices); shapes where
cuBLAS stays faster keep ``F.linear``. The kernel also applies the MLP's SwiGLU to the gate/up
product it computes (one small kernel fewer per layer); ``gemv_swiglu=False`` leaves SwiGLU to
PyTorch, to measure what that saves.

``run_ahead`` (lesson 09; module ``run_ahead``): the engine launches the next decode step before it
reads this step's tokens, which stay on the GPU as the next step's inputs, so the GPU does not wait
while the CPU does a step's bookkeeping. It runs ahead only when the next step is certain (greedy
decoding, nothing waiting, the built-in sampler and block manager). ``None`` switches it on with
CUDA graphs, where the CPU's share of a step is worth hiding.

Values are checked when the config is made (``__post_init__``: each bad value gets an error that
says what is allowed), and against the model and device when an engine is built (``resolve``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .attention import BACKENDS, AttentionBackend, resolve_backend_name
from .gemv import available as gemv_available
from .packed_weights import can_pack
from .scheduler import POLICIES

KV_CACHES = ("paged", "static")
BLOCK_MANAGER_API = ("can_allocate", "allocate", "can_append", "append_slot", "free",
                     "num_free_blocks", "num_used_blocks")
DEFAULT_KV_CACHE_MEMORY = 512 * 2 ** 20


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class EngineConfig:
    """How ``LLMEngine`` builds its parts. Every field has a default; ``None`` means "decided
    from the model and device" (see each comment)."""
    # KV cache (lessons 05, 07)
    kv_cache: str = "paged"            # "paged" (blocks) or "static" (a max_model_len row each)
    block_size: int = 16               # tokens per block (paged only)
    num_blocks: int | None = None      # paged: blocks in the cache; None: as fit kv_cache_memory
    kv_cache_memory: int | None = None  # paged: bytes for K/V when num_blocks is None (512 MiB)
    max_model_len: int | None = None   # prompt + output tokens a sequence; None: model's, <= 2048
    enable_prefix_caching: bool | None = None  # share full prompt blocks; None: on for a paged
    #                                            cache with the built-in block manager
    # scheduling (lesson 06)
    max_num_seqs: int = 32                 # sequences running at once
    max_num_batched_tokens: int = 4096     # prompt tokens one prefill step may compute (unchunked)
    chunked_prefill: bool = False          # prefill long prompts in chunks mixed with decodes
    prefill_chunk_tokens: int = 512        # chunked_prefill: prompt tokens a step computes at most
    policy: str = "continuous"             # "continuous" | "static" | "dynamic"
    batch_window: float = 0.0              # dynamic: seconds the oldest request waits at most
    # model execution (lessons 05, 09)
    dtype: Any = None                      # torch dtype (or its name) for the model; None: as is
    device: Any = None                     # device to put the model on; None: where it is
    attention_backend: Any = "auto"        # a name of attention.BACKENDS or an AttentionBackend
    cuda_graphs: bool | None = None        # replay decode steps from CUDA graphs; None: on CUDA
    compile: bool = False                  # torch.compile the graph-captured decode step
    prepack_weights: bool | None = None    # CPU: weights packed once for oneDNN; None: in bf16
    gemv: bool = False                     # GPU: one-row matmuls by gemv's tuned Triton kernel
    gemv_swiglu: bool = True               # ... with the MLP's SwiGLU inside the gate/up kernel
    run_ahead: bool | None = None          # launch decode step k+1 before reading k's tokens
    seed: int = 0                          # the default sampler's random generator
    # plug-in points (see the module docstring)
    block_manager: Callable | None = None
    schedule_step: Callable | None = None
    sampler: Callable | None = None

    def __post_init__(self):
        def fail(field: str, want: str):
            raise ValueError(f"EngineConfig.{field} must be {want}, got {getattr(self, field)!r}")

        if self.kv_cache not in KV_CACHES:
            fail("kv_cache", f"one of {KV_CACHES}")
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens",
                     "prefill_chunk_tokens"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "an int >= 1")
        if self.num_blocks is not None and (not _is_int(self.num_blocks) or self.num_blocks < 1):
            fail("num_blocks", "None (as many as fit in kv_cache_memory) or an int >= 1")
        memory = self.kv_cache_memory
        if memory is not None and (not _is_int(memory) or memory < 1):
            fail("kv_cache_memory", "None (512 MiB) or a number of bytes (int >= 1)")
        if self.max_model_len is not None and (not _is_int(self.max_model_len)
                                               or self.max_model_len < 2):
            fail("max_model_len",
                 "None (the model's, at most 2048) or an int >= 2 (prompt + one new token)")
        if self.kv_cache == "static" and (self.num_blocks is not None or memory is not None):
            raise ValueError("a static cache has max_num_seqs rows of max_model_len slots: "
                             "num_blocks and kv_cache_memory apply to kv_cache='paged' only")
        if not (self.enable_prefix_caching is None or isinstance(self.enable_prefix_caching, bool)):
            fail("enable_prefix_caching", "None (automatic), True or False")
        if self.enable_prefix_caching and self.kv_cache == "static":
            raise ValueError("prefix caching shares blocks, which a static cache does not have: "
                             "use kv_cache='paged' or leave enable_prefix_caching unset")
        if self.enable_prefix_caching and self.block_manager is not None:
            raise ValueError("enable_prefix_caching=True needs the built-in BlockManager; a block "
                             "manager passed as block_manager= decides itself (leave "
                             "enable_prefix_caching unset)")
        if self.policy not in POLICIES:
            fail("policy", f"one of {POLICIES}")
        if not isinstance(self.chunked_prefill, bool):
            fail("chunked_prefill", "True or False")
        if self.chunked_prefill:
            if self.policy != "continuous" or self.schedule_step is not None:
                raise ValueError("chunked_prefill=True is the built-in scheduler's continuous "
                                 "batching with prompts cut into chunks: it needs "
                                 "policy='continuous' and no schedule_step plug-in")
            if self.block_manager is not None:
                raise ValueError("chunked_prefill=True needs the built-in BlockManager (it "
                                 "registers a prompt block for prefix sharing only once its "
                                 "chunk is computed); leave block_manager unset")
        if isinstance(self.batch_window, bool) or not isinstance(self.batch_window, (int, float)) \
                or not self.batch_window >= 0:
            fail("batch_window", "a number of seconds >= 0")
        if self.dtype is not None:
            dtype = getattr(torch, self.dtype, None) if isinstance(self.dtype, str) else self.dtype
            if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
                fail("dtype",
                     "None or a floating-point torch dtype (torch.float16, 'bfloat16', ...)")
            object.__setattr__(self, "dtype", dtype)
        if self.device is not None:
            try:
                object.__setattr__(self, "device", torch.device(self.device))
            except (RuntimeError, TypeError):
                fail("device", "None or a torch device ('cpu', 'cuda', 'cuda:1', ...)")
        backend = self.attention_backend
        if not isinstance(backend, AttentionBackend) and backend not in BACKENDS:
            fail("attention_backend", f"one of {BACKENDS} or an AttentionBackend")
        if not (self.cuda_graphs is None or isinstance(self.cuda_graphs, bool)):
            fail("cuda_graphs", "None (on CUDA devices), True or False")
        if not isinstance(self.compile, bool):
            fail("compile", "True or False")
        if self.compile and self.cuda_graphs is False:
            raise ValueError("compile=True compiles the decode step that CUDA graphs capture: it "
                             "needs cuda_graphs=True (or None, on a CUDA device)")
        if not (self.prepack_weights is None or isinstance(self.prepack_weights, bool)):
            fail("prepack_weights", "None (on a CPU in bfloat16), True or False")
        if not isinstance(self.gemv, bool):
            fail("gemv", "True or False")
        if not isinstance(self.gemv_swiglu, bool):
            fail("gemv_swiglu", "True or False")
        if not (self.run_ahead is None or isinstance(self.run_ahead, bool)):
            fail("run_ahead", "None (with CUDA graphs), True or False")
        if not _is_int(self.seed):
            fail("seed", "an int")
        for name in ("block_manager", "schedule_step", "sampler"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                fail(name, "None (the built-in one) or callable (see EngineConfig's docstring)")
        if self.schedule_step is not None and self.policy != "continuous":
            raise ValueError("a schedule_step plug-in makes every decision itself (continuous "
                             f"batching): it needs policy='continuous', got {self.policy!r}")

    def replace(self, **changes) -> "EngineConfig":
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_kwargs(cls, config: "EngineConfig | None" = None, **changes) -> "EngineConfig":
        """``config`` (or the defaults) with ``changes``; an unknown name gets the known ones."""
        if config is not None and not isinstance(config, EngineConfig):
            raise TypeError(f"config must be an EngineConfig, got {type(config).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown engine setting(s) {', '.join(unknown)}; EngineConfig has: "
                            f"{', '.join(sorted(names))}")
        base = config or cls()
        return dataclasses.replace(base, **changes) if changes else base

    # ------------------------------------------------------------ against model and device
    def resolve(self, model_config, kv_bytes_per_token: int, device, dtype) -> "EngineConfig":
        """Every ``None`` decided for this model (``ModelConfig``) on ``device``; what cannot work
        there is refused with the reason. ``kv_bytes_per_token``: cache bytes one token takes."""
        device = torch.device(device)
        max_len = self.max_model_len or min(model_config.max_position, 2048)
        if max_len > model_config.max_position:
            raise ValueError(f"max_model_len={max_len} exceeds the model's context of "
                             f"{model_config.max_position} positions")
        prefix = False
        if self.kv_cache == "paged":
            block_size, num_blocks = self.block_size, self.num_blocks
            if num_blocks is None:
                budget = self.kv_cache_memory or DEFAULT_KV_CACHE_MEMORY
                wanted = -(-self.max_num_seqs * max_len // block_size)
                num_blocks = max(1, min(wanted, budget // (kv_bytes_per_token * block_size)))
            if num_blocks * block_size < max_len:
                raise ValueError(
                    f"the KV cache holds {num_blocks} blocks x {block_size} = "
                    f"{num_blocks * block_size} tokens, fewer than one sequence of "
                    f"max_model_len={max_len}; give more num_blocks/kv_cache_memory or a smaller "
                    "max_model_len")
            prefix = self.enable_prefix_caching
            if prefix is None:                 # on with the built-in block manager
                prefix = self.block_manager is None
        graphs = device.type == "cuda" if self.cuda_graphs is None else self.cuda_graphs
        if graphs and device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a CUDA device; the model is on {device.type}")
        if self.compile and not graphs:
            raise ValueError("compile=True compiles the CUDA-graph decode step: it needs a CUDA "
                             "device")
        backend = self.attention_backend
        if not isinstance(backend, AttentionBackend):
            backend = resolve_backend_name(backend, device, dtype)
        prepack = can_pack(device, dtype, exact_only=self.prepack_weights is None)
        if self.prepack_weights and not prepack:
            raise ValueError(f"prepack_weights=True packs CPU weights for oneDNN: {dtype} on "
                             f"{device.type} cannot be packed in this PyTorch build (bfloat16 "
                             "needs a CPU with bf16 instructions); leave it unset")
        if self.gemv and not gemv_available(device, dtype):
            raise ValueError(f"gemv=True needs a CUDA device, Triton and fp16/bf16 weights (and "
                             f"INFERLAB_GEMV not 0); the model is {dtype} on {device.type}")
        changes = dict(max_model_len=max_len, enable_prefix_caching=prefix, cuda_graphs=graphs,
                       run_ahead=graphs if self.run_ahead is None else self.run_ahead,
                       attention_backend=backend,
                       prepack_weights=prepack and self.prepack_weights is not False)
        if self.kv_cache == "static":
            changes["block_size"] = max_len    # one block (row) of max_model_len slots a sequence
        else:
            changes["num_blocks"] = num_blocks
        return dataclasses.replace(self, **changes)

    @property
    def cache_blocks(self) -> int | None:
        """Blocks of ``block_size`` slots in the cache: ``num_blocks``, or a static cache's rows."""
        return self.max_num_seqs if self.kv_cache == "static" else self.num_blocks
