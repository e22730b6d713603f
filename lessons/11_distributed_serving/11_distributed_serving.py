# %% [markdown]
# # 11 · Distributed serving: replicas, autoscaling, model parallelism, monitoring
#
# **Time:** running every cell in full mode took about 2 min on a 2-core CPU and under a minute on
# an H200 GPU (measured), plus your reading and exercises. **Prerequisites:** lesson 10 (serving and
# its metrics); processes and ports.
#
# Lesson 10 served a model from one process. A real service runs **many**: copies of the model
# behind a router (*replicas*; more when traffic rises: *autoscaling*), or one model split across
# devices when it is too big or too slow for one (*model parallelism*). And it is **monitored** for
# latency, throughput and cost. On the course's model you measure:
#
# 1. **Monitoring** - Prometheus metrics and percentiles from histograms (graded);
# 2. **Ray Serve** - autoscaled replicas under a ramped request rate;
# 3. **Tensor parallelism** - a split Llama MLP (graded), then 2 processes with `torch.distributed`
#    (gloo on CPU; NCCL on 2 GPUs, recorded);
# 4. **Pipeline parallelism** - a toy split of layers over 2 processes;
# 5. **Cost** - dollars per million tokens (graded).
#
# It closes with the tutorial's optimization checklist.

# %%
import datetime
import os
import time

import torch

from inferlab.lab import plots, recap, records
from inferlab.lab.bench import device_name, pin_threads
from inferlab.lab.data import sample_prompts
from inferlab.lab.settings import fast_mode, grading, pick
from inferlab.serving import metrics
from inferlab.serving.latency import summarize
from inferlab.serving.launch import what_is_missing

threads = pin_threads()
print(f"processes run on the CPU: {device_name('cpu')}; GPUs seen: {torch.cuda.device_count()} "
      f"(2 or more: tensor parallelism over NCCL is measured live too); fast mode: {fast_mode()}; "
      f"grading: {grading()}")
print(f"  ray serve: {what_is_missing('ray serve') or 'installed'}")

# %% [markdown]
# ## 1 · Monitoring: the Prometheus text format
# A server exports its metrics as plain text on `GET /metrics`, which Prometheus scrapes every few
# seconds: one sample per line - `name{label="value",...} number` - with `# HELP` and `# TYPE`
# comment lines. Three kinds of metric:
#
# * **counter** - only goes up (requests answered, tokens generated); a *rate* is the difference
#   between two reads divided by the time between them;
# * **gauge** - goes up and down (requests in flight, replicas);
# * **histogram** - cumulative counts of observations at or below each bound `le`
#   (`..._bucket{le="0.5"} 30`), plus `_sum` and `_count`.
#
# A page from `inferlab.serving.metrics`, which the service below uses:

# %%
demo = metrics.Registry()
requests_total = demo.counter("llm_requests_total", "Requests answered, by status.",
                              labelnames=("status",))
latency = demo.histogram("llm_request_latency_seconds", "Request latency.",
                         buckets=(0.1, 0.5, 1.0, 5.0))
in_flight = demo.gauge("llm_requests_in_flight", "Requests queued or running.")
for seconds in (0.05, 0.2, 0.3, 0.7, 2.0, 9.0):
    latency.observe(seconds)
    requests_total.inc(status="ok")
requests_total.inc(status="error")
in_flight.set(3)
page = demo.render()
print(page)

# %% [markdown]
# ### Exercise 1 - parse a /metrics page (2 points)
# Implement `parse_metrics(text)`: a list of `(name, labels, value)` for every sample line, in
# order, where `labels` is a dict (empty without braces) and `value` a float. Skip blank lines and
# lines starting with `#`. Watch out: label values are quoted strings that may contain commas,
# spaces and escaped quotes (`\"`, also `\\` and `\n`); a sample may end with a timestamp after
# the value (ignore it); values may be `+Inf`, `NaN` or like `1.5e3`.

# %% solution id=parse_metrics
def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    """Samples of a Prometheus text-format page as (name, labels, value)."""
    ### BEGIN SOLUTION
    samples = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        labels = {}
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            i = brace + 1
            while True:
                while line[i] in " ,":
                    i += 1
                if line[i] == "}":
                    i += 1
                    break
                eq = line.index("=", i)
                key = line[i:eq].strip()
                i = line.index('"', eq) + 1
                value_chars = []
                while line[i] != '"':
                    if line[i] == "\\":
                        i += 1
                        value_chars.append({"n": "\n"}.get(line[i], line[i]))
                    else:
                        value_chars.append(line[i])
                    i += 1
                labels[key] = "".join(value_chars)
                i += 1
            rest = line[i:].split()
        else:
            name, *rest = line.split()
        samples.append((name, labels, float(rest[0])))
    return samples
    ### END SOLUTION

# %% tests id=test_parse_metrics points=2
text = ('# HELP req Requests.\n# TYPE req counter\nreq{status="ok"} 3\nreq{status="error"} 1\n'
        '\nqueue 2\n')
assert parse_metrics(text) == [("req", {"status": "ok"}, 3.0), ("req", {"status": "error"}, 1.0),
                               ("queue", {}, 2.0)], parse_metrics(text)
### BEGIN HIDDEN TESTS
import math

tricky = ('http_requests_total{path="/a,b",msg="say \\"hi\\" there"} 1.5e3\n'
          'lat_bucket{le="+Inf"} 7\n'
          'temp{room="lab 1"} 21.5 1700000000000\n'
          'odd{a="x\\\\y",b="two\\nlines"} NaN\n'
          'inf_gauge +Inf\n')
parsed = parse_metrics(tricky)
assert parsed[0] == ("http_requests_total", {"path": "/a,b", "msg": 'say "hi" there'}, 1500.0), (
    parsed[0])
assert parsed[1] == ("lat_bucket", {"le": "+Inf"}, 7.0), parsed[1]
assert parsed[2] == ("temp", {"room": "lab 1"}, 21.5), parsed[2]
assert parsed[3][1] == {"a": "x\\y", "b": "two\nlines"} and math.isnan(parsed[3][2]), parsed[3]
assert parsed[4] == ("inf_gauge", {}, math.inf)
assert parse_metrics("# only comments\n\n") == []
### END HIDDEN TESTS

# %%
mine = parse_metrics(page)
assert ([(name, labels, value) for name, labels, value in mine if value == value]
        == [s for s in metrics.parse(page) if s[2] == s[2]])
print(f"your parser read {len(mine)} samples; errors so far: "
      f"{metrics.value(mine, 'llm_requests_total', status='error'):.0f}")

# %% [markdown]
# ### Exercise 2 - percentiles from a histogram (2 points)
# A server cannot keep every latency it measured, so it keeps bucket counts and *estimates* the
# p95 from them, as Prometheus' `histogram_quantile` does:
#
# 1. the rank is `q * total` (total = the count of the `+Inf` bucket);
# 2. find the first bucket whose cumulative count is >= the rank;
# 3. interpolate linearly between that bucket's lower bound (the previous bucket's `le`, or 0
#    for the first bucket) and its upper bound, by where the rank falls between the previous
#    cumulative count and this one;
# 4. if the rank falls in the `+Inf` bucket, return the largest finite bound (nothing better is
#    known).
#
# Implement `histogram_quantile(q, buckets)` for `q` in [0, 1] and `buckets` a list of
# `(le, cumulative_count)` sorted by `le`, the last one `(math.inf, total)`.

# %% solution id=histogram_quantile
def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Estimate the q-quantile from cumulative histogram buckets (PromQL's method)."""
    ### BEGIN SOLUTION
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
    ### END SOLUTION

# %% tests id=test_histogram_quantile points=2
import math

cumulative = [(0.1, 5), (0.5, 10), (math.inf, 10)]
assert math.isclose(histogram_quantile(0.5, cumulative), 0.1)
### BEGIN HIDDEN TESTS
assert math.isclose(histogram_quantile(0.75, cumulative), 0.3)      # inside (0.1, 0.5]
assert math.isclose(histogram_quantile(0.25, cumulative), 0.05)     # first bucket starts at 0
mostly_slow = [(1.0, 2), (2.0, 3), (math.inf, 10)]
assert histogram_quantile(0.99, mostly_slow) == 2.0     # in +Inf: the largest finite bound
assert math.isclose(histogram_quantile(0.2, mostly_slow), 1.0)
wide = [(0.25, 0), (0.5, 4), (1.0, 8), (math.inf, 8)]
assert math.isclose(histogram_quantile(0.5, wide), 0.5)
assert math.isclose(histogram_quantile(0.625, wide), 0.625)
### END HIDDEN TESTS

# %%
pairs = metrics.buckets(mine, "llm_request_latency_seconds")
observed = [0.05, 0.2, 0.3, 0.7, 2.0, 9.0]
for q in (0.5, 0.95):
    print(f"p{q * 100:.0f} estimated from the buckets: {histogram_quantile(q, pairs):.3f} s "
          f"(bucket bounds {[b for b, _ in pairs]})")
print("the exact values were", observed, "- a histogram trades exactness for constant memory")

# %% [markdown]
# ## 2 · Ray Serve: replicas behind a router, scaled by load
# [Ray Serve](https://docs.ray.io/en/latest/serve/) runs Python classes as *deployments* with one
# or more *replicas* (processes, each with its own copy of the model). The application here
# (`inferlab.serving.ray_app`):
#
# ```
# HTTP 127.0.0.1:port -> Gateway (1 replica) --handle--> Model (1..N replicas, autoscaled)
#                        /generate, /metrics               the course engine (lessons 05-09)
# ```
#
# Each `Model` replica answers one request at a time; the **autoscaling config** asks Serve's
# controller to keep about `target_ongoing_requests` requests per replica, adding one (up to
# `max_replicas`) when more wait for `upscale_delay_s`, removing them after `downscale_delay_s` of
# low load. The gateway exports request and token counts, a latency histogram and the requests in
# flight on `/metrics`.
#
# The experiment: time one request, then send requests at a rate **below** one replica's capacity,
# then **above** it, then low again, reading the replica count and `/metrics` twice a second. Ray
# and Serve shut down when the cell ends, error or not; every socket they open is on 127.0.0.1.

# %%
from plotly.subplots import make_subplots

cores = len(os.sched_getaffinity(0))
autoscaling = {"min_replicas": 1, "initial_replicas": 1, "max_replicas": max(2, min(4, cores)),
               "target_ongoing_requests": 1, "upscale_delay_s": 1.0,
               "downscale_delay_s": pick(10.0, 5.0), "metrics_interval_s": 0.5,
               "look_back_period_s": 2.0}
ray_tokens = pick(32, 12)
ray_prompts = sample_prompts(32, min_words=8, max_words=60, seed=2)
timeline, ray_traces, ray_summary = [], [], None
print("autoscaling config:", autoscaling)

if grading():
    print("skipped while grading: Ray starts a cluster of processes and the ramp takes a minute")
elif what_is_missing("ray serve"):
    print("Ray Serve not run:", what_is_missing("ray serve"))
else:
    from inferlab.serving.clients import get_text
    from inferlab.serving.loadgen import open_loop
    from inferlab.serving.process import free_port
    from inferlab.serving.ray_app import build_app, generate_request, replica_counts, serve_session

    app = build_app(autoscaling=autoscaling, threads=1)
    with serve_session(free_port(), app) as url:
        generate_request(url, ray_prompts[0], 2)  # warm-up
        calibration = [generate_request(url, p, ray_tokens) for p in ray_prompts[1:4]]
        service_s = sorted(t.end - t.start for t in calibration)[1]  # the median of 3
        capacity = 1 / service_s
        schedule = [(pick(20, 6), 0.5 * capacity), (pick(45, 15), 1.5 * capacity),
                    (pick(40, 12), 0.25 * capacity)]
        print(f"one request of {ray_tokens} tokens: {service_s:.2f} s (median of 3) -> "
              f"one replica serves ~{capacity:.2f} req/s")
        print("schedule (seconds, requests/s):", [(d, round(r, 2)) for d, r in schedule])

        def sample(elapsed):
            page = metrics.parse(get_text(url + "/metrics"))
            states = replica_counts()
            timeline.append({"t": elapsed, "running": states.get("RUNNING", 0),
                             "starting": states.get("STARTING", 0) + states.get("UPDATING", 0),
                             "in_flight": metrics.value(page, "llm_requests_in_flight"),
                             "tokens": metrics.value(page, "llm_generated_tokens_total")})

        started = time.perf_counter()
        results = open_loop(lambda p: generate_request(url, p, ray_tokens), ray_prompts, schedule,
                            max_in_flight=64, seed=0, on_tick=sample)
        ray_traces = [trace for _, trace in results]
        final_page = get_text(url + "/metrics")
        ray_summary = summarize(ray_traces)
    # Ray's replicas ask for no GPU, so they run on the CPU
    recap.note("Ray Serve, autoscaled replicas over the ramp: throughput",
               ray_summary["throughput_tok_s"], "tok/s", "cpu")
    print(f"{ray_summary['requests']} requests ({ray_summary['failed']} failed) in "
          f"{time.perf_counter() - started:.0f} s; "
          f"{ray_summary['throughput_tok_s']:.1f} tokens/s overall")

# %%
if timeline:
    t = [row["t"] for row in timeline]
    rates = [0.0] + [(b["tokens"] - a["tokens"]) / (b["t"] - a["t"])
                     for a, b in zip(timeline, timeline[1:])]
    window = 2.0
    latency_t, latency_p50 = [], []
    for edge in range(0, int(t[-1]) + 1, int(window)):
        done = [tr.end - tr.start for tr in ray_traces
                if tr.error is None and edge <= tr.end - started < edge + window]
        if done:
            latency_t.append(edge + window / 2)
            latency_p50.append(sorted(done)[len(done) // 2])
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=("Model replicas", "Requests in flight (queued + running)",
                                        "Throughput (tokens/s)",
                                        "Request latency, median per 2 s (s)"))
    fig.add_scatter(x=t, y=[row["running"] for row in timeline], name="running",
                    line_shape="hv", row=1, col=1)
    fig.add_scatter(x=t, y=[row["starting"] for row in timeline], name="starting",
                    line_shape="hv", row=1, col=1)
    fig.add_scatter(x=t, y=[row["in_flight"] for row in timeline], name="in flight", row=2, col=1)
    fig.add_scatter(x=t, y=rates, name="tokens/s", row=3, col=1)
    fig.add_scatter(x=latency_t, y=latency_p50, name="latency p50", mode="lines+markers",
                    row=4, col=1)
    boundary = 0.0
    for duration, rate in schedule:
        fig.add_vrect(x0=boundary, x1=boundary + duration,
                      fillcolor="orange" if rate > capacity else "green",
                      opacity=0.07, line_width=0)
        boundary += duration
    fig.update_layout(height=800, template="plotly_white",
                      xaxis4_title="seconds since the load started",
                      title="Ray Serve autoscaling under a ramped request rate "
                            "(green: below capacity, orange: above)")
    fig.show()
    peak = max(row["running"] for row in timeline)
    print(f"replicas: 1 -> {peak} at peak; largest queue "
          f"{max(row['in_flight'] for row in timeline):.0f} requests")
    gateway = metrics.parse(final_page)
    hist = metrics.buckets(gateway, "llm_request_latency_seconds")
    exact = [tr.end - tr.start for tr in ray_traces if tr.error is None]
    from inferlab.serving.latency import percentile as exact_percentile
    for q in (0.5, 0.95):
        print(f"latency p{q * 100:.0f}: "
              f"from the gateway's histogram {histogram_quantile(q, hist):.2f} s, "
              f"exact from the client {exact_percentile(exact, q * 100):.2f} s")

# %% [markdown]
# In the high-rate phase the queue grows first; the replica count rises and the queue drains only
# after `upscale_delay_s` **and** the time a new replica needs to load the model. Autoscaling
# always reacts late to a burst, which is why services keep `min_replicas` above what the average
# load needs. On a 2-core machine a second replica shares the same cores, so throughput may rise
# less than the replica count; with a core (or a GPU) per replica, each adds roughly one replica's
# capacity.
#
# ## 3 · Tensor parallelism: one layer split across processes
# Each weight matrix is split across devices (Megatron-LM). For an `nn.Linear` weight `W` of shape
# `[out, in]` (so `y = x @ W.T`):
#
# * **column-parallel**: rank `r` keeps the `r`-th block of `W`'s **rows** (a slice of the
#   outputs) and computes its slice of `y` - no communication;
# * **row-parallel**: rank `r` keeps the `r`-th block of `W`'s **columns** (a slice of the
#   inputs), multiplies it by *its* slice of `x`, and the partial results are **summed over the
#   ranks** (an *all-reduce*).
#
# A Llama MLP is `down(silu(gate(x)) * up(x))`. With `gate` and `up` column-parallel, each rank
# holds a slice of the intermediate activations; `silu(...) * ...` is element-wise, so it works on
# the slices, and `down` is row-parallel on exactly those slices: one all-reduce for the whole MLP.
#
# ### Exercise 3 - a tensor-parallel MLP, simulated (2 points)
# Implement `tp_mlp_partials(x, gate_w, up_w, down_w, world)`: the list of the `world` ranks'
# partial outputs (before the all-reduce). Rank `r` holds the `r`-th **contiguous** block of
# `gate_w` and `up_w` rows and the matching block of `down_w` columns. Raise `ValueError` if the
# intermediate size is not divisible by `world`. (`gate_w`, `up_w`: `[inter, hidden]`; `down_w`:
# `[hidden, inter]`; `x`: `[tokens, hidden]`.)

# %% solution id=tp_mlp_partials
def tp_mlp_partials(x, gate_w, up_w, down_w, world: int) -> list:
    """Each rank's partial MLP output; their sum (the all-reduce) is the full MLP output."""
    import torch.nn.functional as F
    ### BEGIN SOLUTION
    inter = gate_w.shape[0]
    if inter % world:
        raise ValueError(f"intermediate size {inter} is not divisible by {world} ranks")
    size = inter // world
    partials = []
    for rank in range(world):
        block = slice(rank * size, (rank + 1) * size)
        hidden = F.silu(x @ gate_w[block].T) * (x @ up_w[block].T)
        partials.append(hidden @ down_w[:, block].T)
    return partials
    ### END SOLUTION

# %% tests id=test_tp_mlp_partials points=2
import torch
import torch.nn.functional as F

torch.manual_seed(0)
x, gate_w, up_w, down_w = (torch.randn(3, 8), torch.randn(12, 8), torch.randn(12, 8),
                           torch.randn(8, 12))
full = (F.silu(x @ gate_w.T) * (x @ up_w.T)) @ down_w.T
parts = tp_mlp_partials(x, gate_w, up_w, down_w, 2)
assert len(parts) == 2 and torch.allclose(sum(parts), full, atol=1e-5)
### BEGIN HIDDEN TESTS
parts = tp_mlp_partials(x, gate_w, up_w, down_w, 4)
assert len(parts) == 4 and torch.allclose(sum(parts), full, atol=1e-5)
for rank, part in enumerate(parts):
    block = slice(rank * 3, rank * 3 + 3)
    expected = (F.silu(x @ gate_w[block].T) * (x @ up_w[block].T)) @ down_w[:, block].T
    assert torch.allclose(part, expected, atol=1e-5), (
        f"rank {rank} must hold the {rank}-th contiguous block")
assert len(tp_mlp_partials(x, gate_w, up_w, down_w, 1)) == 1
try:
    tp_mlp_partials(x, gate_w, up_w, down_w, 5)
except ValueError:
    pass
else:
    raise AssertionError("12 is not divisible by 5: expected ValueError")
### END HIDDEN TESTS

# %% [markdown]
# ### Exercise 4 - what the all-reduce costs (1 point)
# The usual all-reduce (NCCL's and gloo's *ring*) runs in two passes around a ring of `world`
# ranks: a reduce-scatter, then an all-gather. In each pass every rank sends `world - 1` pieces of
# `1/world` of the tensor. Implement `ring_allreduce_bytes(n_bytes, world)`: the bytes **each
# rank sends** to all-reduce a tensor of `n_bytes` (0 for a single rank).

# %% solution id=ring_allreduce_bytes
def ring_allreduce_bytes(n_bytes: float, world: int) -> float:
    """Bytes each rank sends in a ring all-reduce of ``n_bytes``."""
    ### BEGIN SOLUTION
    return 2 * (world - 1) / world * n_bytes
    ### END SOLUTION

# %% tests id=test_ring_allreduce_bytes points=1
assert ring_allreduce_bytes(1000, 2) == 1000
### BEGIN HIDDEN TESTS
import math

assert ring_allreduce_bytes(1000, 1) == 0
assert math.isclose(ring_allreduce_bytes(1000, 4), 1500)
assert math.isclose(ring_allreduce_bytes(4096 * 2 * 16, 8), 2 * 7 / 8 * 4096 * 2 * 16)
### END HIDDEN TESTS

# %% [markdown]
# Your split on layer 0's MLP of SmolLM2-135M (hidden 576, intermediate 1536), simulated in this
# process: the sum of the partials must equal the unsplit MLP.

# %%
from inferlab.serving.parallel import TensorParallelMLP, run_pp, run_tp, smollm2_mlp

mlp = smollm2_mlp(layer=0)
torch.manual_seed(0)
x = torch.randn(4, mlp.gate_proj.in_features)
with torch.no_grad():
    reference = mlp(x)
    parts = tp_mlp_partials(x, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight, 2)
    package = sum(TensorParallelMLP(mlp, rank, 2, reduce=lambda t: t)(x) for rank in range(2))
print("your 2-way split: max |difference| to the full MLP "
      f"{float((sum(parts) - reference).abs().max()):.2e} "
      f"(outputs up to {float(reference.abs().max()):.1f}); inferlab.serving.parallel's: "
      f"{float((package - reference).abs().max()):.2e}")
print("all-reduce of one [tokens, 576] fp32 activation: "
      f"{ring_allreduce_bytes(576 * 4, 2):.0f} bytes sent per rank per token")

# %% [markdown]
# ### The real thing: 2 processes, `torch.distributed`
# `python -m inferlab.serving.parallel tp` starts 2 processes joined by `torch.distributed` (gloo
# backend, over 127.0.0.1). Each holds half of the MLP: its `ColumnParallelLinear` and
# `RowParallelLinear` do what your function does, with a real `all_reduce`. Rank 0 checks the
# result against the whole MLP and times the split forward, its compute and its all-reduce for a
# few batch sizes (tokens).

# %%
tp_cpu = None
if grading():
    print("skipped while grading: starts 2 processes")
else:
    tp_cpu = run_tp(world_size=2, backend="gloo", tokens=pick((1, 16, 128, 512), (1, 64)),
                    weights="smollm2", repeats=pick(20, 5), threads=1)


def tp_table(result: dict, title: str) -> None:
    print(f"{title}: {result['world_size']} ranks, {result['backend']}, MLP {result['hidden']}->"
          f"{result['intermediate']}, {result['dtype']}")
    print(f"{'tokens':>7}{'1 process ms':>14}{'split ms':>10}{'compute ms':>12}"
          f"{'all-reduce ms':>15}{'bytes':>11}{'speed-up':>10}{'max |diff|':>12}")
    for run in result["runs"]:
        print(f"{run['tokens']:>7}{run['single_forward_s'] * 1e3:>14.3f}"
              f"{run['tp_forward_s'] * 1e3:>10.3f}{run['shard_compute_s'] * 1e3:>12.3f}"
              f"{run['all_reduce_s'] * 1e3:>15.3f}{run['all_reduce_bytes']:>11}"
              f"{run['single_forward_s'] / run['tp_forward_s']:>9.2f}x{run['max_abs_diff']:>12.2e}")


if tp_cpu:
    tp_table(tp_cpu, f"measured here ({device_name('cpu')}, 1 thread per rank)")
    largest = max(tp_cpu["runs"], key=lambda r: r["tokens"])
    recap.note(f"tensor-parallel MLP, 2 processes (gloo), {largest['tokens']} tokens: "
               "speed-up over 1 process",
               largest["single_forward_s"] / largest["tp_forward_s"], "x", "cpu")

tp_live_gpu = None
if not grading() and torch.cuda.device_count() >= 2:  # a machine with 2 GPUs: measure NCCL live
    tp_live_gpu = run_tp(world_size=2, backend="nccl", tokens=(1, 128, 1024, 4096),
                         weights="random", hidden=4096, intermediate=11008, dtype="bfloat16",
                         repeats=20)
    tp_table(tp_live_gpu,
             f"measured here (2x {torch.cuda.get_device_name(0)}), Llama-2-7B MLP size")
    largest = max(tp_live_gpu["runs"], key=lambda r: r["tokens"])
    recap.note(f"tensor-parallel MLP, Llama-2-7B size, 2 GPUs (NCCL), {largest['tokens']} "
               "tokens: speed-up over 1 GPU",
               largest["single_forward_s"] / largest["tp_forward_s"], "x",
               f"2x {torch.cuda.get_device_name(0)}")

try:
    tp_gpu = records.load("tp_gpu")
    print()
    for result in tp_gpu["results"].values():
        if isinstance(result, dict) and "runs" in result:
            tp_table(result, f"{records.label(tp_gpu)}, Llama-2-7B MLP size")
except FileNotFoundError as missing:
    tp_gpu = None
    print(missing)

# %%
series, xs = {}, None
if tp_cpu:
    xs = [r["tokens"] for r in tp_cpu["runs"]]
    series["CPU gloo: split / 1 process"] = [r["tp_forward_s"] / r["single_forward_s"]
                                             for r in tp_cpu["runs"]]
if tp_gpu and "bfloat16" in tp_gpu["results"]:
    gpu_runs = tp_gpu["results"]["bfloat16"]["runs"]
    fig = plots.lines([r["tokens"] for r in gpu_runs],
                      {"1 GPU": [r["single_forward_s"] * 1e3 for r in gpu_runs],
                       "2 GPUs, split": [r["tp_forward_s"] * 1e3 for r in gpu_runs],
                       "all-reduce alone": [r["all_reduce_s"] * 1e3 for r in gpu_runs]},
                      title=f"Tensor-parallel MLP, bf16 ({records.label(tp_gpu)})",
                      xaxis="tokens in the batch", yaxis="ms per forward", log_x=True, log_y=True)
    fig.show()
if series:
    plots.lines(xs, series,
                title="Split MLP time relative to one process (CPU, this run; < 1 is faster)",
                xaxis="tokens in the batch", yaxis="ratio", log_x=True).show()

# %% [markdown]
# The split's output equals the single process up to rounding (the sum runs in a different order,
# so compare with a tolerance). Splitting halves each rank's compute but adds one all-reduce, whose
# cost has a fixed part (a round trip between processes or GPUs) and a part proportional to
# `tokens x hidden`. With few tokens the fixed part dominates and the split is *slower*; with many
# the compute dominates and the split approaches 2x. On this CPU both ranks share the same two
# cores with everything else, so the compute does not really halve; on GPUs each rank has its own
# device, with NVLink between them. Tensor parallelism in real servers (vLLM's
# `--tensor-parallel-size`) also splits attention by heads, so one decoder layer costs two
# all-reduces.
#
# ## 4 · Pipeline parallelism: splitting the layers
# Stage 0 runs the first half of the layers and sends its activations to stage 1, which runs the
# rest. With one batch, one stage always waits for the other (the **bubble**). Cutting the batch
# into `m` micro-batches lets stage 0 start the next while stage 1 works: the ideal time is
# `(m + p - 1) / m` times a stage's share of the work, for `p` stages.
# A toy: a stack of MLP blocks (hidden 576), 2 processes, `send`/`recv` over gloo.

# %%
if grading():
    print("skipped while grading: starts 2 processes")
else:
    pp = run_pp(microbatches=pick((1, 2, 4, 8), (1, 2, 4)), layers=pick(8, 4),
                tokens=pick(256, 128), repeats=pick(5, 2))
    single = pp["single_process_s"]
    print(f"{pp['layers']} blocks, {pp['tokens']} tokens; one process: {single * 1e3:.1f} ms")
    print(f"{'micro-batches':>14}{'measured ms':>13}{'ideal ms':>10}{'bubble (theory)':>17}")
    for m, seconds in pp["pipeline_s"].items():
        m = int(m)
        ideal = single / 2 * (m + 1) / m
        print(f"{m:>14}{seconds * 1e3:>13.1f}{ideal * 1e3:>10.1f}{1 / (m + 1):>17.0%}")
    print("(ideal: perfect halves, free communication, a core per stage; the difference is "
          "communication, Python overhead and cores shared with other processes)")
    most = max(pp["pipeline_s"], key=int)
    recap.note(f"pipeline, 2 stages, {most} micro-batches: speed-up over 1 process",
               single / pp["pipeline_s"][most], "x", "cpu")

# %% [markdown]
# Pipeline parallelism sends activations only between neighbouring stages (cheap; fine even
# between machines), but adds the bubble and per-micro-batch overheads; tensor parallelism
# communicates inside every layer and wants the fastest links (NVLink inside one machine).
# Large deployments combine them: tensor parallelism within a machine, pipeline across machines.
#
# ## 5 · What it costs
# The tutorial asks to "monitor: track latency, throughput, cost". Cost follows from throughput.
#
# ### Exercise 5 - dollars per million tokens (1 point)
# A machine costs `dollars_per_hour` and produces `tokens_per_s` when busy; it is busy a fraction
# `utilization` of the time you pay for. Implement `cost_per_million_tokens` and raise
# `ValueError` if `tokens_per_s` or `utilization` is not positive.

# %% solution id=cost_per_million_tokens
def cost_per_million_tokens(dollars_per_hour: float, tokens_per_s: float,
                            utilization: float = 1.0) -> float:
    """Dollars per 1,000,000 generated tokens."""
    ### BEGIN SOLUTION
    if tokens_per_s <= 0 or utilization <= 0:
        raise ValueError("tokens_per_s and utilization must be positive")
    tokens_per_hour = tokens_per_s * 3600 * utilization
    return dollars_per_hour / tokens_per_hour * 1e6
    ### END SOLUTION

# %% tests id=test_cost_per_million_tokens points=1
import math

assert math.isclose(cost_per_million_tokens(3.6, 1000), 1.0)
### BEGIN HIDDEN TESTS
assert math.isclose(cost_per_million_tokens(3.6, 1000, utilization=0.5), 2.0)
assert math.isclose(cost_per_million_tokens(2.0, 50), 2.0 / (50 * 3600) * 1e6)
for bad in [dict(tokens_per_s=0), dict(tokens_per_s=-1), dict(utilization=0)]:
    args = dict(dollars_per_hour=1.0, tokens_per_s=100.0, utilization=1.0)
    args.update(bad)
    try:
        cost_per_million_tokens(**args)
    except ValueError:
        pass
    else:
        raise AssertionError(f"expected ValueError for {bad}")
### END HIDDEN TESTS

# %% [markdown]
# Throughputs: this run's Ray service over the whole ramp and, where recorded, lesson 10's engines
# on CPU (labelled with machine and date). Set the machine's price and utilization; the default
# $/hour is a placeholder, not a quote.

# %%
import ipywidgets as widgets
from IPython.display import display

throughput_sources = {}
if ray_summary:
    throughput_sources["Ray Serve + course engine (this run)"] = ray_summary["throughput_tok_s"]
try:
    serving_record = records.load("serving_cpu")
    for engine, summary in serving_record["results"]["engines"].items():
        if isinstance(summary, dict) and summary.get("throughput_tok_s"):
            throughput_sources[f"{engine} ({records.label(serving_record)})"] = (
                summary["throughput_tok_s"])
except FileNotFoundError:
    pass
if not throughput_sources:
    throughput_sources["example: 100 tokens/s (not measured)"] = 100.0

price = widgets.FloatLogSlider(value=1.0, base=10, min=-2, max=2, step=0.05, description="$ / hour",
                               readout_format=".2f")
busy = widgets.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="utilization")
cost_output = widgets.Output()


def draw_cost(*_):
    cost_output.clear_output(wait=True)
    with cost_output:
        try:
            costs = {name: cost_per_million_tokens(price.value, tps, busy.value)
                     for name, tps in throughput_sources.items()}
            for name, dollars in costs.items():
                print(f"{name:<75} {throughput_sources[name]:8.1f} tok/s -> ${dollars:,.2f} "
                      "per 1M tokens")
            plots.bars(list(costs), list(costs.values()), yaxis="$ per 1M tokens",
                       title=f"Cost per million tokens at ${price.value:.2f}/hour, "
                             f"{busy.value:.0%} busy").show()
        except Exception as error:
            print(f"Cannot compute this combination: {error.__class__.__name__}: {error}")


price.observe(draw_cost, names="value")
busy.observe(draw_cost, names="value")
display(widgets.VBox([widgets.HTML("<b>Cost per million tokens</b>"), price, busy, cost_output]))
draw_cost()

# %% [markdown]
# ## 6 · The optimization checklist
# Each item of the tutorial's closing checklist with the lesson that measures it live on your
# machine, and the records shipped with the course (GPU runs, labelled with card and date).
# Lessons 10 and 11's results come from this run and their records.

# %%
checklist = [
    ("Measure first: latency breakdown, roofline", "00", []),
    ("Quantize weights (INT8 / INT4 / NF4)", "01", ["bnb_llama2_7b"]),
    ("GPTQ / AWQ / GGUF", "02", []),
    ("Prune (2:4 sparsity)", "03", ["sparsity_2of4"]),
    ("Distill to a smaller model", "04", []),
    ("KV cache", "05", ["engine_gpu"]),
    ("Continuous batching", "06", ["engine_gpu", "engine_serving_gpu"]),
    ("PagedAttention", "07", ["engine_gpu"]),
    ("Speculative decoding", "08", []),
    ("FlashAttention", "09", ["attention_gpu"]),
    ("Use a serving engine (vLLM, llama.cpp)", "10", ["serving_cpu", "serving_setup"]),
    ("Replicas + autoscaling (Ray Serve)", "11", []),
    ("Model parallelism for big models", "11", ["tp_gpu"]),
    ("Monitor latency, throughput, cost", "11", []),
]
available_records = set(records.available())
print(f"{'item':<46}{'lesson':<8}records shipped with the course")
for item, lesson, names in checklist:
    shipped = [f"{n} ({records.label(records.load(n))})" for n in names if n in available_records]
    print(f"{item:<46}{lesson:<8}{'; '.join(shipped) or '- (measured live in the lesson)'}")

print("\nmeasured in this run:")
if ray_summary:
    print(f"  Ray Serve: {ray_summary['throughput_tok_s']:.1f} tokens/s over the ramp, latency p50 "
          f"{ray_summary['e2e_p50']:.2f} s / p95 {ray_summary['e2e_p95']:.2f} s, replicas up to "
          f"{max(row['running'] for row in timeline) if timeline else 1}")
if tp_cpu:
    best = max(tp_cpu["runs"], key=lambda r: r["tokens"])
    print(f"  tensor parallel on CPU, {best['tokens']} tokens: "
          f"{best['single_forward_s'] / best['tp_forward_s']:.2f}x the single process")
if tp_gpu and "bfloat16" in tp_gpu["results"]:
    best = max(tp_gpu["results"]["bfloat16"]["runs"], key=lambda r: r["tokens"])
    print(f"  tensor parallel, {records.label(tp_gpu)}, {best['tokens']} tokens bf16: "
          f"{best['single_forward_s'] / best['tp_forward_s']:.2f}x one GPU")
print(f"  ({device_name('cpu')}, {datetime.date.today().isoformat()})")
if "serving_cpu" in available_records:
    engines = records.load("serving_cpu")["results"]["engines"]
    base = engines.get("transformers generate")
    if isinstance(base, dict):
        print("\nlesson 10's engines against transformers generate "
              f"({records.label(records.load('serving_cpu'))}):")
        for name, summary in engines.items():
            if isinstance(summary, dict) and name != "transformers generate":
                print(f"  {name:<30} "
                      f"{summary['throughput_tok_s'] / base['throughput_tok_s']:5.1f}x throughput")

# %% [markdown]
# ## What you measured
# The headline figures of this lesson, measured in this run on your machine: what the autoscaled
# Ray Serve replicas delivered over the ramp, and how much faster the tensor-parallel and the
# pipelined splits ran than one process. Re-running a measurement updates its row.

# %%
recap.show()

# %% [markdown]
# ## Summary
# * **Metrics** are plain text: counters (rates from differences), gauges, histograms (percentiles
#   *estimated* from buckets).
# * **Replicas** multiply capacity only when each has its own hardware; **autoscaling** lags load
#   by the decision window plus the model's load time.
# * **Tensor parallelism** splits every layer (one all-reduce per MLP): worth it when the compute
#   per token is large against the link's latency - many tokens, big layers, fast links.
# * **Pipeline parallelism** splits the layers: little communication, a bubble that micro-batches
#   shrink.
# * **Cost per token** is price / (throughput x utilization).

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
# `from inferlab.lab.submit import submit; submit("11_distributed_serving")` in a cell instead.

# %%
from inferlab.lab.submit import submit_form

submit_form("11_distributed_serving")
