"""Load test of the course service: many students submitting at once.

    python benchmarks/service_load.py                               # 300 submissions, 100 students
    python benchmarks/service_load.py --submissions 100 --students 50 --knowledge-checks 20
    python benchmarks/service_load.py --no-write                    # print, do not rewrite results

What it does:

1. makes ``--students`` confirmed students with API tokens straight in a fresh database (in a
   temporary data folder; as a test fixture would - the sign-up itself is not what is measured);
2. starts the service for real (``python -m autograder serve``: uvicorn, SQLite, ``--workers``
   grading processes), with the per-student limits raised through
   ``INFERLAB_SERVICE_SUBMISSIONS_PER_MINUTE`` / ``INFERLAB_SERVICE_QUEUED_PER_STUDENT``;
3. fires every submission at once (asyncio + httpx, one connection each): lesson 00's solution,
   and ``--knowledge-checks`` of them lesson 12's, spread over the students round-robin; measures
   each request's accept latency (to its ``202``) and the accept throughput;
4. waits until nothing is queued or grading, then checks that none was lost: every accepted id
   is ``graded`` with full marks (asked through the API with its student's token) and the
   database holds exactly as many submissions as were accepted. Grading throughput = submissions
   / (first accepted -> last graded).

Results are written to ``benchmarks/results/service_load.md`` (machine, date, versions).
``tests/test_service_load.py`` runs the same code with about 100 submissions.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.service_support import Service, make_students, solution  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "service_load.md"
MAIN_LESSON, CHECK_LESSON = "00_why_inference_is_slow", "12_knowledge_check"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def _fire(url: str, jobs: list[tuple[str, str, bytes]], timeout: float) -> list[dict]:
    """Every submission at once; one answer per job: status, latency, body."""
    import httpx

    limits = httpx.Limits(max_connections=len(jobs), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        start = asyncio.Event()

        async def one(token: str, lesson: str, data: bytes) -> dict:
            await start.wait()
            t0 = time.perf_counter()
            try:
                response = await client.post(
                    "/api/submissions", headers={"Authorization": f"Bearer {token}"},
                    data={"lesson": lesson},
                    files={"notebook": (f"{lesson}.ipynb", data, "application/x-ipynb+json")})
                status, body = response.status_code, response.json()
            except Exception as exc:  # noqa: BLE001 - a refused or dropped request is a result
                status, body = None, {"error": f"{type(exc).__name__}: {exc}"}
            return {"status": status, "latency": time.perf_counter() - t0, "body": body,
                    "token": token, "lesson": lesson, "accepted_at": time.time()}

        tasks = [asyncio.create_task(one(*job)) for job in jobs]
        await asyncio.sleep(0.2)            # every task is waiting at the start line
        start.set()
        return await asyncio.gather(*tasks)


def _get(url: str, token: str | None = None) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=60)
    response.raise_for_status()
    return response.json()


def run_load(submissions: int = 300, students: int = 100, knowledge_checks: int = 30,
             workers: int = 2, data_dir: Path | None = None, grading_timeout: float = 3600,
             report=print) -> dict:
    """Run the load test; a dict of figures and checks (``lost``, ``not_accepted``, ...)."""
    with tempfile.TemporaryDirectory(prefix="inferlab-load-") as scratch:
        data = Path(data_dir or scratch) / "service"
        made = make_students(f"sqlite:///{data / 'service.db'}", students)
        report(f"{students} students made; starting the service ({workers} grading workers)")
        env = {"INFERLAB_SERVICE_SUBMISSIONS_PER_MINUTE": str(submissions + 10),
               "INFERLAB_SERVICE_QUEUED_PER_STUDENT": str(submissions + 10)}
        notebooks = {lesson: solution(lesson).read_bytes()
                     for lesson in (MAIN_LESSON, CHECK_LESSON)}
        jobs = []
        for i in range(submissions):
            lesson = CHECK_LESSON if i < knowledge_checks else MAIN_LESSON
            jobs.append((made[i % students][1], lesson, notebooks[lesson]))
        with Service(data, workers=workers, env=env, log=Path(scratch) / "service.log") as service:
            report(f"firing {submissions} submissions at once "
                   f"({submissions - knowledge_checks} x {MAIN_LESSON}, "
                   f"{knowledge_checks} x {CHECK_LESSON})")
            t0 = time.time()
            answers = asyncio.run(_fire(service.url, jobs, timeout=300))
            accept_wall = time.time() - t0
            accepted = [a for a in answers if a["status"] == 202]
            latencies = [a["latency"] for a in answers]
            report(f"accepted {len(accepted)}/{submissions} in {accept_wall:.2f} s; "
                   f"waiting for the grades")
            deadline = time.time() + grading_timeout
            while True:
                waiting = _get(service.url + "/healthz")["waiting"]
                if waiting == 0 or time.time() > deadline:
                    break
                time.sleep(1)
            all_graded_at = time.time()
            results = [_get(f"{service.url}/api/submissions/{a['body']['id']}", a["token"])
                       for a in accepted]
            from sqlalchemy import create_engine, text
            engine = create_engine(f"sqlite:///{data / 'service.db'}")
            with engine.connect() as conn:
                in_db = conn.execute(text("select count(*) from submissions")).scalar()
                by_status = dict(conn.execute(text(
                    "select status, count(*) from submissions group by status")).all())
            engine.dispose()
            log_tail = service.output()
    graded = [r for r in results if r["status"] == "graded"]
    full = [r for r in graded if r["score"] == r["max_score"] and r["max_score"]]
    ids = [a["body"]["id"] for a in accepted]
    grading_wall = all_graded_at - t0
    figures = {
        "submissions": submissions, "students": students, "knowledge_checks": knowledge_checks,
        "workers": workers,
        "answers": {str(k): sum(a["status"] == k for a in answers)
                    for k in sorted({a["status"] for a in answers}, key=str)},
        "accept_latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                             "max": max(latencies), "mean": statistics.fmean(latencies)},
        "accept_wall_s": accept_wall,
        "accept_throughput_rps": submissions / accept_wall,
        "grading_wall_s": grading_wall,
        "grading_throughput_per_s": len(graded) / grading_wall,
        "graded": len(graded), "full_marks": len(full), "in_database": in_db,
        "by_status": by_status, "unique_ids": len(set(ids)),
        "not_accepted": [a for a in answers if a["status"] != 202][:5],
        "lost": len(accepted) - len(graded),
        "timed_out": waiting != 0,
    }
    if figures["lost"] or figures["timed_out"]:
        figures["service_log_tail"] = log_tail
    return figures


def _versions() -> str:
    from importlib.metadata import version

    names = ("fastapi", "uvicorn", "starlette", "sqlalchemy", "httpx")
    return ", ".join(f"{n} {version(n)}" for n in names)


def markdown(f: dict, shared: str) -> str:
    lat = f["accept_latency_s"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    answers = ", ".join(f"{k}: {v}" for k, v in f["answers"].items())
    statuses = ", ".join(f"{k} {v}" for k, v in f["by_status"].items())

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f}"
    return f"""# Course service under load

`python benchmarks/service_load.py --submissions {f['submissions']} --students {f['students']} \
--knowledge-checks {f['knowledge_checks']} --workers {f['workers']}`

{f['submissions']} submissions fired at once by {f['students']} students through the notebook API
(`POST /api/submissions`, one connection each): {f['submissions'] - f['knowledge_checks']} x
lesson 00's solution and {f['knowledge_checks']} x lesson 12's, to one service process (uvicorn,
SQLite) grading with {f['workers']} sandboxed worker processes.

| | |
|---|---|
| answers | {answers} |
| accept latency p50 / p95 / max | {ms(lat['p50'])} / {ms(lat['p95'])} / {ms(lat['max'])} ms |
| all {f['submissions']} accepted in | {f['accept_wall_s']:.2f} s \
({f['accept_throughput_rps']:.0f} requests/s) |
| all graded after | {f['grading_wall_s']:.0f} s ({f['grading_throughput_per_s']:.2f} \
submissions/s, {f['grading_throughput_per_s'] * 60:.0f}/min) |
| graded / full marks | {f['graded']} / {f['full_marks']} |
| rows in the database | {f['in_database']} ({statuses}) |
| lost | {f['lost']} |

Accepting is cheap (the upload is parsed as a notebook, stored and queued); grading is the
bottleneck and scales with the grading workers (each submission runs its lesson's tests in a
bubblewrap sandbox). A class submitting at the same minute waits in the queue, nothing is lost.

Machine: {os.cpu_count()} CPU cores ({platform.machine()}), {platform.system()}; Python
{platform.python_version()}; {_versions()}. {shared}
Measured {now}.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--submissions", type=int, default=300)
    p.add_argument("--students", type=int, default=100)
    p.add_argument("--knowledge-checks", type=int, default=30,
                   help="how many of the submissions are lesson 12's (the others lesson 00's)")
    p.add_argument("--workers", type=int, default=2, help="grading processes")
    p.add_argument("--shared", default="",
                   help="a note on the machine's other load, written into the results")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    figures = run_load(args.submissions, args.students, args.knowledge_checks, args.workers)
    print(json.dumps({k: v for k, v in figures.items() if k != "service_log_tail"}, indent=1,
                     default=str))
    if figures.get("service_log_tail"):
        print(figures["service_log_tail"], file=sys.stderr)
    ok = not figures["lost"] and figures["in_database"] == figures["graded"] == args.submissions
    if ok and not args.no_write:
        RESULTS.write_text(markdown(figures, args.shared))
        print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
