"""The course's own inference engine, built lesson by lesson (05-09), nano-vllm style.

=================== ========= ================================================================
module              lesson    what it teaches
=================== ========= ================================================================
``kv_cache``        05, 07    the KV cache, its size formula; static vs paged layout; slots
``weights``         05        a Llama-family model as plain tensors (fused QKV)
``model_runner``    05        one forward pass over the packed tokens of many sequences
``sampler``         05, 08    greedy, temperature, top-k, top-p
``sequence``        06        a request's state as the scheduler sees it
``scheduler``       06        static / dynamic / continuous batching, preemption
``inputs``          06, 07    packing a step's sequences into tensors (no padding), slot mapping
``block_manager``   07        paged blocks, prefix sharing, copy on write
``attention``       07, 09    attention backends: gathered (SDPA, math) or over the blocks
``spec_decode``     08        speculative decoding (draft, verify, accept/reject)
``tiled_attention`` 09        tiling and the online softmax (FlashAttention's idea)
``gpu_kernels``     09        Triton decode kernels: split-context paged attention, RoPE
``cpu_kernels``     07        C++ decode kernels for the CPU: paged attention, RoPE, norm
``gemv``            09        a Triton matrix-vector kernel for one-row (batch-1) matmuls
``packed_weights``  06        CPU weights packed once for oneDNN's matrix multiply
``cuda_graphs``     09        decode steps recorded once and replayed with one launch
``config``          05-09     ``EngineConfig``: every setting, checked in one place; plug-ins
``engine``          06        ``LLMEngine.generate(prompts, SamplingParams)``, ``step()``
``outputs``         06, 07    ``RequestOutput``, ``StepResult``, ``EngineStats``
=================== ========= ================================================================
"""
from .attention import AttentionBackend
from .block_manager import BlockManager
from .config import EngineConfig
from .engine import LLMEngine
from .kv_cache import PagedKVCache, StaticKVCache, kv_bytes_per_token, kv_cache_bytes
from .model_runner import ModelRunner
from .outputs import EngineStats, RequestOutput, StepResult
from .sampler import Sampler, SamplingParams, sample, sampling_probs
from .scheduler import Scheduler, continuous_step
from .sequence import Sequence, SequenceStatus
from .spec_decode import SpeculativeDecoder, accept_reject
from .weights import LlamaWeights, ModelConfig

__all__ = ["AttentionBackend", "BlockManager", "EngineConfig", "EngineStats", "LLMEngine",
           "RequestOutput", "StepResult", "PagedKVCache", "StaticKVCache", "kv_bytes_per_token",
           "kv_cache_bytes", "LlamaWeights", "ModelConfig", "ModelRunner", "Sampler",
           "SamplingParams", "sample", "sampling_probs", "Scheduler", "continuous_step", "Sequence",
           "SequenceStatus", "SpeculativeDecoder", "accept_reject"]
