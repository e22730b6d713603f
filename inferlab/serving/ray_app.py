"""A model served by Ray Serve: autoscaled replicas behind HTTP, with Prometheus metrics. Lesson 11.

Ray Serve runs Python classes as *deployments*: each deployment has one or more *replicas*
(processes holding their own copy of the model), and Serve routes requests to them. Here::

    HTTP 127.0.0.1:port  ->  Gateway (1 replica)  --handle-->  Model (1..N replicas, autoscaled)
                             /generate, /metrics                 the course engine (or transformers)

* **Model** answers one request at a time per replica (``max_ongoing_requests=1``: a CPU
  replica has one thread). Its ``autoscaling_config`` tells Serve's controller to keep about
  ``target_ongoing_requests`` requests per replica: when more are waiting (averaged over
  ``look_back_period_s``) for ``upscale_delay_s``, it starts a replica, up to ``max_replicas``;
  when load falls, it removes them after ``downscale_delay_s``. A new replica must load the model
  before it helps - that start-up time is why autoscaling reacts late to a burst.
* **Gateway** is the single entry point and the place to *measure*: it counts requests and
  tokens, times each request into a latency histogram, and tracks how many requests are in the
  system (queued + running). ``GET /metrics`` returns them in the Prometheus text format
  (``inferlab.serving.metrics``).

``serve_session`` starts Ray (local, loopback only, no dashboard) and Serve, deploys the app,
waits until its HTTP route answers, and **always** shuts both down when the ``with`` block ends.
Starting takes about half a minute on an idle 2-core machine and minutes on a busy one: it waits
for readiness (the raylet registered, the route served) rather than a fixed time, starts Ray again
when its raylet gave up, and after ``RAY_START_TIMEOUT_S`` raises ``ServerStartError`` saying
which step did not come up.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time

from inferlab.serving.metrics import Registry

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
DEFAULT_AUTOSCALING = {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 2,
                       "target_ongoing_requests": 1, "upscale_delay_s": 1.0,
                       "downscale_delay_s": 6.0, "metrics_interval_s": 0.5,
                       "look_back_period_s": 2.0}
# How long ``serve_session`` waits for Ray + Serve to come up, in seconds (override with the
# environment variable INFERLAB_RAY_START_TIMEOUT_S).
RAY_START_TIMEOUT_S = float(os.environ.get("INFERLAB_RAY_START_TIMEOUT_S", "300"))
# Ray's and Serve's own start-up deadlines that a busy 2-core machine overruns, raised (a value
# already in the environment wins). Ray's processes inherit them from this one. Serve gives its
# HTTP proxy 5 s to become ready and kills it when it is late (serve.start then fails with
# "killed by ray.kill"); the GCS gets 30 s to write its port.
PATIENT_RAY_SETTINGS = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
                        "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",
                        "RAY_gcs_server_port_wait_time_s": str(int(RAY_START_TIMEOUT_S))}


def loopback_only_replica() -> None:
    """Make this Serve replica's inter-deployment gRPC server listen on 127.0.0.1.

    Ray Serve 2.60 binds it to ``[::]`` (every interface) with no setting to change that. The
    replica calls the module-level ``add_port_to_grpc_server`` *after* the user's ``__init__``, so
    replacing that function here, in ``__init__``, changes the address it binds.
    """
    try:
        import ray.serve._private.replica as replica
    except ImportError:  # not inside Ray
        return
    original = replica.add_port_to_grpc_server
    if getattr(original, "inferlab_loopback", False):
        return

    def add_port(server, address: str):
        return original(server,
                        address.replace("[::]", "127.0.0.1").replace("0.0.0.0", "127.0.0.1"))

    add_port.inferlab_loopback = True
    replica.add_port_to_grpc_server = add_port


class ModelServer:
    """What a Model replica runs (plain class, so it can also be used without Ray)."""

    def __init__(self, threads: int = 1, use_course_engine: bool = True):
        import torch
        torch.set_num_threads(threads)
        self.kind = "transformers"
        self.engine = None
        if use_course_engine:
            try:
                from inferlab.engine import LLMEngine
                self.engine = LLMEngine(kv_cache_memory=64 * 2 ** 20, max_model_len=1024,
                                        max_num_seqs=4)
                self.kind = "course engine"
            except Exception:  # the course engine is missing or broken: fall back
                self.engine = None
        if self.engine is None:
            from inferlab.lab.models import load_model
            self.model, self.tokenizer = load_model()

    def generate(self, prompt: str, max_tokens: int) -> dict:
        import torch
        start = time.perf_counter()
        if self.engine is not None:
            from inferlab.engine import SamplingParams
            params = SamplingParams(max_tokens=max_tokens, ignore_eos=True)
            out = self.engine.generate([prompt], params)[0]
            text, tokens = out.text, len(out.token_ids)
        else:
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
            with torch.no_grad():
                out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                          max_new_tokens=max_tokens, min_new_tokens=max_tokens)
            new = out[0, ids.shape[1]:]
            text, tokens = self.tokenizer.decode(new, skip_special_tokens=True), int(new.numel())
        return {"text": text, "tokens": tokens, "engine": self.kind,
                "compute_s": time.perf_counter() - start}


class GatewayMetrics:
    """The metrics the gateway exports (one ``Registry``)."""

    def __init__(self):
        self.registry = Registry()
        self.requests = self.registry.counter("llm_requests_total", "Requests answered, by status.",
                                              labelnames=("status",))
        self.tokens = self.registry.counter("llm_generated_tokens_total",
                                            "Output tokens generated.")
        self.latency = self.registry.histogram("llm_request_latency_seconds",
                                               "Time from arrival at the gateway to the answer.",
                                               LATENCY_BUCKETS)
        self.in_flight = self.registry.gauge("llm_requests_in_flight",
                                             "Requests in the system: "
                                             "queued for a replica or running.")


def build_app(autoscaling: dict | None = None, threads: int = 1, use_course_engine: bool = True):
    """The Serve application (Gateway -> Model), not yet running."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse

    @serve.deployment(name="Model", max_ongoing_requests=1, ray_actor_options={"num_cpus": 0.5},
                      autoscaling_config=dict(DEFAULT_AUTOSCALING, **(autoscaling or {})))
    class Model(ModelServer):
        def __init__(self, *args, **kwargs):
            loopback_only_replica()
            super().__init__(*args, **kwargs)

    @serve.deployment(name="Gateway", max_ongoing_requests=1000,
                      ray_actor_options={"num_cpus": 0.1})
    class Gateway:
        def __init__(self, model):
            loopback_only_replica()
            self.model, self.metrics = model, GatewayMetrics()

        async def __call__(self, request: Request):
            if request.url.path.rstrip("/") == "/metrics":
                return PlainTextResponse(self.metrics.registry.render(),
                                         media_type="text/plain; version=0.0.4")
            if request.url.path.rstrip("/") != "/generate":
                return JSONResponse({"error": "use POST /generate or GET /metrics"},
                                    status_code=404)
            body = await request.json()
            start = time.perf_counter()
            self.metrics.in_flight.inc()
            try:
                answer = await self.model.generate.remote(str(body["prompt"]),
                                                          int(body.get("max_tokens", 16)))
            except Exception as error:  # noqa: BLE001 - reported as a failed request
                self.metrics.requests.inc(status="error")
                return JSONResponse({"error": str(error)}, status_code=500)
            finally:
                self.metrics.in_flight.dec()
            self.metrics.latency.observe(time.perf_counter() - start)
            self.metrics.requests.inc(status="ok")
            self.metrics.tokens.inc(answer["tokens"])
            return JSONResponse(answer)

    return Gateway.bind(Model.bind(threads=threads, use_course_engine=use_course_engine))


def replica_counts(app_name: str = "llm", deployment: str = "Model") -> dict[str, int]:
    """How many replicas of ``deployment`` are in each state (RUNNING, STARTING, STOPPING...)."""
    from ray import serve
    status = serve.status().applications.get(app_name)
    if status is None or deployment not in status.deployments:
        return {}
    replica_states = status.deployments[deployment].replica_states
    return {str(getattr(k, "value", k)): v for k, v in replica_states.items()}


class RayletExited(Exception):
    """Ray's raylet process died while ``ray.init`` waited for it."""


def _raylet_alive() -> bool:
    """Whether a ``raylet`` child of this process is running (True when psutil is missing)."""
    try:
        import psutil
    except ImportError:
        return True
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "raylet" and child.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            pass
    return False


def _stop_new_processes(before: set[int]) -> None:
    """SIGTERM, then SIGKILL, this process's descendants that are not in ``before`` (by pid),
    and reap those that were its own children (a failed ``ray.init`` keeps no handle on them)."""
    from .process import _alive, _descendants
    new = [pid for pid in _descendants(os.getpid()) if pid not in before]
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(_alive(pid) for pid in new) and time.monotonic() < deadline:
            time.sleep(0.1)
    for pid in new:
        with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
            os.waitpid(pid, os.WNOHANG)


def start_local_ray(num_cpus: int, timeout_s: float, attempts: int = 3) -> None:
    """``ray.init`` a local cluster on loopback, waiting up to ``timeout_s`` for it in all.

    Two of Ray 2.60's start-up deadlines are fixed in its code and too short on a busy 2-core
    machine: the raylet aborts when its dashboard agent (a Python process) has not written its
    port within 15 s ("Timed out waiting for file .../metrics_agent_port_..." in raylet.out), and
    ``ray.init`` gives the raylet 30 s to register with the GCS ("The current node timed out
    during startup"). So, while ``ray.init`` runs, its registration check
    (``services.get_node``) keeps polling until the node is registered, the raylet has died, or
    ``timeout_s`` has passed; and a start that failed (the raylet died) is cleaned up - the
    processes it started are stopped - and tried again, up to ``attempts`` times while time is
    left. If none succeeds, ``ServerStartError`` says why.
    """
    import ray
    import ray._private.services as services

    from .process import ServerStartError, _descendants
    started = time.monotonic()
    deadline = started + timeout_s
    check = services.get_node

    def get_node_once_registered(gcs_address, node_id):
        while True:
            try:
                return check(gcs_address, node_id)
            except RuntimeError:  # not registered yet
                if not _raylet_alive():  # not a RuntimeError: ends Ray's own 30 s loop at once
                    raise RayletExited("the raylet exited before it registered") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    for attempt in range(1, attempts + 1):
        before = set(_descendants(os.getpid()))
        services.get_node = get_node_once_registered
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False,
                     ignore_reinit_error=True)
            return
        except (TypeError, ValueError):  # a wrong argument: trying again will not help
            _stop_new_processes(before)
            raise
        except Exception as error:
            raylet = "running" if _raylet_alive() else "exited"
            _stop_new_processes(before)
            spent = time.monotonic() - started
            if attempt < attempts and deadline - time.monotonic() > 30:
                print(f"Ray did not start (attempt {attempt} of {attempts}, {spent:.0f} s so far, "
                      f"raylet {raylet}): trying again", flush=True)
                continue
            try:
                from ray._common.utils import get_default_ray_temp_dir
                logs = os.path.join(get_default_ray_temp_dir(), "session_latest", "logs")
            except Exception:  # noqa: BLE001 - only for the message
                logs = "/tmp/ray/session_latest/logs"
            raise ServerStartError(
                f"Ray did not start: {attempt} attempt(s) in {spent:.0f} s (limit {timeout_s:.0f} "
                f"s); the raylet {raylet}. Last error: {error.__class__.__name__}: {error}\n"
                f"Is the machine busy? Close other work, or set INFERLAB_RAY_START_TIMEOUT_S to "
                f"wait longer. Ray's own logs: {logs} (raylet.out)") from error
        finally:
            services.get_node = check


def wait_for_route(url: str, app_name: str, deadline: float) -> None:
    """Poll Serve's ``/-/routes`` on ``url`` until it lists ``app_name``; raise at ``deadline``."""
    from .clients import get_json
    from .process import ServerStartError
    last = "no answer yet"
    while True:
        try:
            routes = get_json(url + "/-/routes", timeout=5.0)
            if app_name in routes.values():
                return
            last = f"routes {routes}"
        except Exception as error:  # noqa: BLE001 - not listening yet, or 503 while starting
            last = f"{error.__class__.__name__}: {error}"
        if time.monotonic() > deadline:
            raise ServerStartError(f"Ray Serve's HTTP proxy on {url} did not serve the app "
                                   f"{app_name!r} in time (last: {last}).")
        time.sleep(0.5)


@contextlib.contextmanager
def serve_session(port: int, app=None, app_name: str = "llm", num_cpus: int = 4,
                  start_timeout_s: float | None = None):
    """Start Ray + Serve on 127.0.0.1:``port``, deploy ``app``, yield its URL; always shut down.

    Yields once the app is RUNNING and the HTTP proxy routes to it. Ray's start (with its
    retries) gets ``start_timeout_s`` (default ``RAY_START_TIMEOUT_S``); Serve's HTTP proxy then
    gets until the same deadline, but at least 120 s; past that ``ServerStartError`` is raised.
    Every socket Ray opens listens on loopback only (see the comment below); ``ray.shutdown``
    stops all of its processes (GCS, raylet, agents, replicas)."""
    # On Linux Ray binds its internal servers (GCS, raylet, workers) to the machine's network
    # address, whatever _node_ip_address says; with "clusters" switched off it uses loopback only.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name, value in PATIENT_RAY_SETTINGS.items():
        os.environ.setdefault(name, value)
    import ray
    import ray._private.ray_constants as ray_constants
    from ray import serve
    ray_constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before the variable was set
    timeout_s = RAY_START_TIMEOUT_S if start_timeout_s is None else start_timeout_s
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    start_local_ray(num_cpus, timeout_s)
    try:
        url = f"http://127.0.0.1:{port}"
        # serve.start and serve.run wait a fixed 60 s for the HTTP proxy; a slow proxy is waited
        # for below, until the deadline, on the condition that matters: the route answers.
        with contextlib.suppress(TimeoutError):
            serve.start(http_options={"host": "127.0.0.1", "port": port},
                        logging_config={"log_level": "WARNING"})
        with contextlib.suppress(TimeoutError):
            serve.run(app if app is not None else build_app(), name=app_name, route_prefix="/",
                      blocking=False)
        wait_for_route(url, app_name, max(deadline, time.monotonic() + 120))
        print(f"Ray Serve answering on {url} after {time.perf_counter() - started:.1f} s",
              flush=True)
        yield url
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()


def generate_request(url: str, prompt: str, max_tokens: int, timeout: float = 300.0):
    """One POST /generate as a ``RequestTrace`` (no streaming: TTFT = whole answer)."""
    from .clients import post_json
    from .latency import RequestTrace
    trace = RequestTrace(start=time.perf_counter())
    try:
        answer = post_json(url + "/generate", {"prompt": prompt, "max_tokens": max_tokens}, timeout)
        trace.token_times.append(time.perf_counter())
        trace.n_tokens, trace.text = answer["tokens"], answer["text"]
    except Exception as error:  # noqa: BLE001
        trace.error = f"{error.__class__.__name__}: {error}"
    return trace


if __name__ == "__main__":  # a quick manual check: python -m inferlab.serving.ray_app
    from .process import free_port
    with serve_session(free_port()) as base:
        print(json.dumps(generate_request(base, "Hello", 4).__dict__, default=str))
