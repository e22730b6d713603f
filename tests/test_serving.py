"""inferlab.serving: latency maths, the SSE client, load generators, server processes
(lessons 10-11).

Fast tests: no vLLM, llama.cpp or Ray needed. The real servers are in test_serving_servers.py.
"""
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from inferlab.serving import clients, latency, loadgen, process
from inferlab.serving.latency import RequestTrace


# ------------------------------------------------------------------------------ latency
def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.random(23).tolist()
    for q in (0, 5, 50, 90, 95, 99, 100):
        assert latency.percentile(values, q) == pytest.approx(np.percentile(values, q))
    with pytest.raises(ValueError):
        latency.percentile([], 50)
    with pytest.raises(ValueError):
        latency.percentile([1], 101)


def test_trace_and_summary():
    a = RequestTrace(start=0.0, token_times=[0.5, 1.0, 1.5, 2.0])
    b = RequestTrace(start=0.0, token_times=[2.5, 3.0, 3.5, 4.0], n_tokens=4)
    failed = RequestTrace(start=0.0, error="boom")
    assert a.ttft == 0.5 and a.itls == [0.5, 0.5, 0.5] and a.end == 2.0 and a.output_tokens == 4
    summary = latency.summarize([a, b, failed])
    assert summary["requests"] == 2 and summary["failed"] == 1
    assert summary["throughput_tok_s"] == pytest.approx(8 / 4.0)
    assert summary["ttft_p50"] == pytest.approx(1.5)
    assert summary["itl_p95"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="boom"):
        latency.summarize([failed])
    table = latency.format_table({"x": summary, "y": "not installed"})
    assert "not run: not installed" in table and "2.0" in table


# ------------------------------------------------------------------------------ clients
SSE = [b'data: {"choices": [{"text": "Hel", "index": 0}]}\n', b"\n", b": keep-alive\n",
       b'data: {"choices": [{"delta": {"content": "lo"}, "index": 0}]}\n', b"\n",
       b'data: {"choices": [], "usage": {"completion_tokens": 2, "prompt_tokens": 3}}\n',
       b"data: [DONE]\n", b'data: {"choices": [{"text": "after done"}]}\n']


def test_iter_sse_data_and_chunk_text():
    chunks = list(clients.iter_sse_data(SSE))
    assert len(chunks) == 3
    assert "".join(clients.chunk_text(c) for c in chunks) == "Hello"


def test_completion_body():
    body = clients.completion_body("m", "p", 8, banned_tokens=[2])
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] and body["min_tokens"] == 8 and body["logit_bias"] == {"2": -100}
    assert "ignore_eos" not in clients.completion_body("m", "p", 8, fixed_length=False)


class _FakeOpenAI(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(request["max_tokens"]):
            self.wfile.write(f'data: {{"choices": [{{"text": "t{i} "}}]}}\n\n'.encode())
            self.wfile.flush()
            time.sleep(0.01)
        usage = {"choices": [],
                 "usage": {"completion_tokens": request["max_tokens"], "prompt_tokens": 1}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_stream_completion_and_closed_loop(fake_server):
    trace = clients.stream_completion(fake_server, "m", "hello", 5)
    assert trace.error is None and trace.n_tokens == 5 and len(trace.token_times) == 5
    assert trace.text == "t0 t1 t2 t3 t4 " and trace.ttft > 0
    traces = loadgen.closed_loop(lambda p: clients.stream_completion(fake_server, "m", p, 3),
                                 ["a"] * 6, 3)
    summary = latency.summarize(traces)
    assert summary["requests"] == 6 and summary["output_tokens"] == 18


def test_stream_completion_records_errors():
    port = process.free_port()  # nothing listens there
    trace = clients.stream_completion(f"http://127.0.0.1:{port}", "m", "x", 2, timeout=2)
    assert trace.error and "Connection" in trace.error


# ------------------------------------------------------------------------------ loadgen
def test_closed_loop_respects_concurrency():
    active, peak, lock = [0], [0], threading.Lock()

    def send(prompt):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        start = time.perf_counter()
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return RequestTrace(start=start, token_times=[time.perf_counter()], text=prompt)

    traces = loadgen.closed_loop(send, [str(i) for i in range(10)], 3)
    assert [t.text for t in traces] == [str(i) for i in range(10)]
    assert peak[0] == 3
    with pytest.raises(ValueError):
        loadgen.closed_loop(send, ["a"], 0)


def test_failed_sends_become_error_traces():
    def send(prompt):
        raise RuntimeError("server down")
    traces = loadgen.closed_loop(send, ["a", "b"], 2)
    assert all("server down" in t.error for t in traces)


def test_arrival_times_follow_the_schedule():
    times = loadgen.arrival_times([(100.0, 2.0), (100.0, 0.0), (100.0, 10.0)], seed=1)
    assert times == sorted(times)
    first = [t for t in times if t < 100]
    last = [t for t in times if t >= 200]
    assert 150 < len(first) < 250 and 900 < len(last) < 1100
    assert not [t for t in times if 100 <= t < 200]
    assert times == loadgen.arrival_times([(100.0, 2.0), (100.0, 0.0), (100.0, 10.0)], seed=1)


def test_open_loop_is_bounded_and_ticks():
    ticks = []

    def send(prompt):
        start = time.perf_counter()
        time.sleep(0.01)
        return RequestTrace(start=start, token_times=[time.perf_counter()])

    started = time.perf_counter()
    results = loadgen.open_loop(send, ["p"], [(1.0, 20.0)], max_in_flight=4, on_tick=ticks.append)
    assert time.perf_counter() - started < 5
    assert 5 < len(results) < 45 and all(t.error is None for _, t in results)
    assert ticks and all(0 <= t <= 5 for t in ticks)


def test_drive_runs_a_sans_io_generator_in_real_time():
    class Gen:                                  # every request due at once, two at a time
        def __init__(self):
            self.arrivals, self.sent, self.tokens, self.ended = [0.0] * 5, [], {}, {}

        def due(self, now):
            free = 2 - (len(self.sent) - len(self.ended))
            out = [i for i in range(5) if i not in self.sent][:max(0, free)]
            self.sent += out
            return out

        def token(self, i, t):
            self.tokens.setdefault(i, []).append(t)

        def done(self, i, t):
            self.ended[i] = t

    in_flight, most = [0], [0]
    lock = threading.Lock()

    def send(prompt):
        start = time.perf_counter()
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.02)
        if prompt == "fail":
            with lock:
                in_flight[0] -= 1
            raise RuntimeError("boom")
        times = [time.perf_counter(), time.perf_counter()]
        with lock:
            in_flight[0] -= 1
        return RequestTrace(start=start, token_times=times)

    gen = Gen()
    wall = loadgen.drive(gen, send, ["a", "b", "fail"])
    assert 0.04 < wall < 5 and most[0] <= 2
    assert sorted(gen.ended) == [0, 1, 2, 3, 4]
    assert 2 not in gen.tokens and all(len(gen.tokens[i]) == 2 for i in (0, 1, 3, 4))
    assert all(0 <= gen.tokens[i][0] <= gen.ended[i] <= wall for i in (0, 1, 3, 4))


# ------------------------------------------------------------------------------ process
def http_server(port):
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def alive(pid):
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_server_process_starts_on_loopback_and_stops():
    port = process.free_port()
    with process.ServerProcess("http", http_server(port), port, ready_path="/",
                               ready_timeout=30) as server:
        assert server.running() and server.startup_seconds is not None
        addresses = process.listening_addresses(server.pid)
        assert addresses and all(ip == "127.0.0.1" for ip, _ in addresses)
        assert server in process.running_servers()
        pid, log = server.pid, server.log_path
    assert not alive(pid) and server not in process.running_servers()
    assert not log.exists()  # a clean stop removes its log


def test_only_loopback_is_allowed():
    with pytest.raises(ValueError, match="127.0.0.1"):
        process.ServerProcess("x", ["true"], 1234, host="0.0.0.0")


def test_a_server_that_dies_is_reported_with_its_log():
    command = [sys.executable, "-c", "import sys; print('no such model here'); sys.exit(3)"]
    server = process.ServerProcess("dying", command, process.free_port(), ready_timeout=30)
    with pytest.raises(process.ServerStartError, match="exited with code 3") as info:
        server.start()
    assert "no such model here" in str(info.value)
    assert server.log_path.exists()  # kept for reading
    server.log_path.unlink()


def test_a_server_that_never_answers_times_out_and_is_killed():
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    server = process.ServerProcess("silent", command, process.free_port(), ready_timeout=1.5)
    with pytest.raises(process.ServerStartError, match="did not answer"):
        server.start()
    assert not alive(server.pid)
    server.log_path.unlink()


def test_stop_kills_the_whole_process_group_even_when_the_block_fails():
    port = process.free_port()
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
              "subprocess.run([sys.executable, '-m', 'http.server', '--bind', '127.0.0.1', "
              f"'{port}'])")
    with pytest.raises(RuntimeError, match="a failing cell"):
        with process.ServerProcess("family", [sys.executable, "-c", script], port, ready_path="/",
                                   ready_timeout=30) as server:
            import psutil
            children = [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
            assert len(children) >= 2
            raise RuntimeError("a failing cell")
    assert not alive(server.pid) and not any(alive(c) for c in children)


CHILD = textwrap.dedent("""
    import sys, os
    from inferlab.serving.process import ServerProcess, free_port
    port = free_port()
    server = ServerProcess("http",
                           [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                           port, ready_path="/", ready_timeout=30).start()
    print(server.pid, flush=True)
    if sys.argv[1] == "raise":
        raise SystemExit("the notebook cell failed")   # atexit must stop the server
    os.kill(os.getpid(), 9)                            # no atexit: PR_SET_PDEATHSIG must
""")


@pytest.mark.parametrize("how", ["raise", "killed"])
def test_no_server_outlives_its_parent(how):
    done = subprocess.run([sys.executable, "-c", CHILD, how], capture_output=True, text=True,
                          timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    pid = int(done.stdout.split()[0])
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(pid), f"server {pid} outlived its parent ({how})"


# ------------------------------------------------------------------------------ launch + engines
def test_launch_commands_bind_loopback(tmp_path):
    from inferlab.serving import launch
    vllm = launch.vllm_server(tmp_path, cpu_threads=1)
    assert vllm.command[vllm.command.index("--host") + 1] == "127.0.0.1"
    assert vllm.env["VLLM_HOST_IP"] == "127.0.0.1" and vllm.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert "--enforce-eager" in vllm.command and vllm.process is None
    gguf = tmp_path / "m.gguf"
    llama = launch.llama_cpp_server(gguf)
    assert llama.command[llama.command.index("--host") + 1] == "127.0.0.1"
    assert llama.command[llama.command.index("--interrupt_requests") + 1] == "False"
    assert launch.what_is_missing("openai") is None or "openai" in launch.what_is_missing("openai")


def test_in_process_engines_stream_exactly_max_tokens(model_and_tokenizer):
    from inferlab.serving.engines import CourseEngine, TransformersEngine, eos_ids
    model, tokenizer = model_and_tokenizer
    assert tokenizer.eos_token_id in eos_ids(tokenizer)
    engine = TransformersEngine(model, tokenizer)
    trace = engine.stream("The capital of France is", 4)
    assert trace.n_tokens == 4 and len(trace.token_times) == 4 and trace.ttft > 0
    course = CourseEngine(model, tokenizer, kv_cache_memory=16 * 2 ** 20, max_model_len=256,
                          max_num_seqs=2)
    traces = course.closed_loop(["Hello", "The sky is", "One two three"], 3, concurrency=2)
    assert [t.n_tokens for t in traces] == [3, 3, 3]
    assert all(len(t.token_times) == 3 and t.ttft >= 0 for t in traces)


def test_llama_cpp_engine(model_and_tokenizer):
    pytest.importorskip("llama_cpp")
    from inferlab.lab.models import embedded_gguf
    from inferlab.serving.engines import LlamaCppEngine, eos_ids
    _, tokenizer = model_and_tokenizer
    engine = LlamaCppEngine(embedded_gguf(), n_threads=1, n_ctx=256, banned=eos_ids(tokenizer))
    try:
        trace = engine.stream("The capital of France is", 5)
    finally:
        engine.close()
    assert trace.n_tokens == 5 and trace.text
