"""Serving a model: real servers started from a notebook, the clients that talk to them, and the
load generator that measures them, and how to monitor and split a served model. Introduced in
lesson 10, used again in lesson 11.

==============  ==============================================================================
module          what it teaches
==============  ==============================================================================
``process``     start a server as a child process on 127.0.0.1, wait until it answers, always
                stop it (by process id, its whole process group, even when a cell fails)
``latency``     what a served request is measured by: TTFT, inter-token latency, percentiles,
                throughput
``clients``     the OpenAI-compatible HTTP API on the wire (plain ``http.client`` + server-sent
                events) and through the ``openai`` client
``loadgen``     N concurrent clients (closed loop) and a ramped request rate (open loop)
``concurrency`` the course engine and transformers' static batches at a fixed concurrency, in
                process: ShareGPT-like lengths, ITL p50/p99, the decode steps' roofline
``engines``     in-process engines behind one ``stream(prompt, max_tokens)`` interface:
                transformers, the course engine, llama-cpp-python
``launch``      the command lines that start vLLM's and llama.cpp's servers; what is installed
``vllm_offline`` vLLM's offline ``LLM.generate`` run in a child process (``python -m``)
``ray_app``     a Ray Serve application with autoscaling replicas and a /metrics endpoint
``metrics``     Prometheus-format metrics: counters, gauges, histograms, a /metrics page (11)
``parallel``    tensor-parallel linear layers, a split MLP, a toy pipeline (11)
``multi_lora``  many LoRA fine-tunes of one base model served in one mixed batch (06)
==============  ==============================================================================

Nothing here imports vLLM, llama.cpp or Ray at import time: each is imported where it is used,
so a machine without them can still run everything else (and the notebooks say what is missing).
"""
