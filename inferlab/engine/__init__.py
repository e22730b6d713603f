"""The course's own inference engine, built lesson by lesson (05-09), nano-vllm style.

=================  ========  =====================================================
module             lesson    what it teaches
=================  ========  =====================================================
``kv_cache``       05, 07    the KV cache, its size formula; static vs paged layout
``sampler``        05, 08    greedy, temperature, top-k, top-p
``sequence``       06        a request's state as the scheduler sees it
``scheduler``      06        static / dynamic / continuous batching, preemption
``block_manager``  07        paged blocks, prefix sharing, copy on write
``weights``        05        a Llama-family model as plain tensors (fused QKV)
``model_runner``   05-07,09  prefill/decode over packed tokens, CUDA graphs
``gpu_kernels``    09        Triton decode kernels: split-context paged attention, RoPE
``spec_decode``    08        speculative decoding (draft, verify, accept/reject)
``tiled_attention`` 09       tiling and the online softmax (FlashAttention's idea)
``engine``         06        ``LLMEngine.generate(prompts, SamplingParams)``
=================  ========  =====================================================
"""
from .block_manager import BlockManager
from .engine import EngineStats, LLMEngine, RequestOutput
from .kv_cache import PagedKVCache, StaticKVCache, kv_bytes_per_token, kv_cache_bytes
from .model_runner import ModelRunner
from .weights import LlamaWeights, ModelConfig
from .spec_decode import SpeculativeDecoder, accept_reject
from .sampler import Sampler, SamplingParams, sample, sampling_probs
from .scheduler import Scheduler
from .sequence import Sequence, SequenceStatus

__all__ = ["BlockManager", "EngineStats", "LLMEngine", "RequestOutput", "PagedKVCache",
           "StaticKVCache", "kv_bytes_per_token", "kv_cache_bytes", "LlamaWeights", "ModelConfig",
           "ModelRunner", "Sampler", "SamplingParams", "sample", "sampling_probs", "Scheduler",
           "Sequence", "SequenceStatus", "SpeculativeDecoder", "accept_reject"]
