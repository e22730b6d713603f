"""Plausible wrong answers for lesson 10; each passes the visible tests and fails the hidden
ones."""

CONTEXT = "import random\n"

_LOADGEN = '''
class LoadGenerator:
    def __init__(self, n_requests, rate, max_concurrency, seed=0):
        rng, t = random.Random(seed), 0.0
        self.arrivals = []
        for _ in range(n_requests):
            t += rng.expovariate(rate)
            self.arrivals.append(t)
        self.max_concurrency = max_concurrency
        self.sent, self.tokens, self.ended = {}, {}, {}
        self.next = 0

    def due(self, now):
        released = []
        while (self.next < len(self.arrivals) and self.arrivals[self.next] <= now
               and len(self.sent) - len(self.ended) < self.max_concurrency):
            self.sent[self.next] = now
            self.tokens[self.next] = []
            released.append(self.next)
            self.next += 1
        return released

    def token(self, i, t):
        self.tokens[i].append(t)

    def done(self, i, t):
        self.ended[i] = t

    def report(self):
        rows = []
        for i in sorted(self.ended):
            times, sent = self.tokens[i], self.sent[i]
            rows.append({"arrival": self.arrivals[i], "sent": sent,
                         "wait": sent - self.arrivals[i],
                         "ttft": times[0] - sent if times else None,
                         "itls": [b - a for a, b in zip(times, times[1:])],
                         "latency": self.ended[i] - self.arrivals[i]})
        return rows
'''

MUTANTS = {
    "load_generator": [
        # The seed is ignored: always the same arrivals.
        _LOADGEN.replace("rng, t = random.Random(seed), 0.0", "rng, t = random.Random(0), 0.0"),
        # Releases at most one request per call.
        _LOADGEN.replace("            self.next += 1\n", "            self.next += 1\n            break\n"),
        # The newest arrival first (a stack, not a queue).
        _LOADGEN.replace("""        while (self.next < len(self.arrivals) and self.arrivals[self.next] <= now
               and len(self.sent) - len(self.ended) < self.max_concurrency):
            self.sent[self.next] = now
            self.tokens[self.next] = []
            released.append(self.next)
            self.next += 1""", """        waiting = [i for i, a in enumerate(self.arrivals) if a <= now and i not in self.sent]
        for i in reversed(waiting):
            if len(self.sent) - len(self.ended) >= self.max_concurrency:
                break
            self.sent[i] = now
            self.tokens[i] = []
            released.append(i)"""),
        # A request without tokens breaks the report.
        _LOADGEN.replace('"ttft": times[0] - sent if times else None,', '"ttft": times[0] - sent,'),
        # Failed requests (no token) are left out of the report.
        _LOADGEN.replace("for i in sorted(self.ended):", "for i in sorted(i for i in self.ended if self.tokens[i]):"),
        # (Hard-coded to the visible example: the "seed is ignored" mutant above always draws
        # the visible test's seed-0 arrivals.)
        # The course's Poisson arrivals, over the expected duration only: sometimes too few.
        _LOADGEN.replace("""        rng, t = random.Random(seed), 0.0
        self.arrivals = []
        for _ in range(n_requests):
            t += rng.expovariate(rate)
            self.arrivals.append(t)""", """        from inferlab.serving.loadgen import arrival_times
        self.arrivals = arrival_times([(n_requests / rate, rate)], seed)[:n_requests]"""),
    ],
    "ttft_and_itl": [
        # Every gap replaced by the average gap.
        '''
def ttft_and_itl(sent_at, arrivals):
    if not arrivals:
        raise ValueError("no token arrived")
    n = len(arrivals) - 1
    mean = (arrivals[-1] - arrivals[0]) / n if n else 0.0
    return arrivals[0] - sent_at, [mean] * n
''',
        # Gaps in reverse order.
        '''
def ttft_and_itl(sent_at, arrivals):
    if not arrivals:
        raise ValueError("no token arrived")
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    return arrivals[0] - sent_at, gaps[::-1]
''',
        # No check for an empty stream (IndexError instead of ValueError).
        '''
def ttft_and_itl(sent_at, arrivals):
    return arrivals[0] - sent_at, [b - a for a, b in zip(arrivals, arrivals[1:])]
''',
        # Hard-coded to the visible example.
        '''
def ttft_and_itl(sent_at, arrivals):
    if not arrivals:
        raise ValueError("no token arrived")
    return 0.5, [0.25, 0.25]
''',
        # The library call: NumPy's diff (an array, not the list of gaps).
        '''
def ttft_and_itl(sent_at, arrivals):
    import numpy as np
    if not arrivals:
        raise ValueError("no token arrived")
    return arrivals[0] - sent_at, np.diff(arrivals)
''',
    ],
    "percentile": [
        # Nearest rank, no interpolation.
        '''
def percentile(values, q):
    data = sorted(values)
    if not data:
        raise ValueError("empty")
    return data[int(round((len(data) - 1) * q / 100))]
''',
        # Forgets to sort.
        '''
def percentile(values, q):
    data = list(values)
    if not data:
        raise ValueError("empty")
    rank = (len(data) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)
''',
        # Hard-coded to the visible examples (both medians): the middle value, whatever q.
        '''
def percentile(values, q):
    data = sorted(values)
    if not data:
        raise ValueError("empty")
    return data[len(data) // 2]
''',
    ],
    "throughput": [
        # Mean of each request's own tokens/s.
        '''
def throughput(requests):
    rates = [len(a) / (a[-1] - s) for s, a in requests if a]
    if not rates:
        raise ValueError("no request succeeded")
    return sum(rates) / len(rates)
''',
        # Tokens over the sum of request durations (as if served one after the other).
        '''
def throughput(requests):
    done = [(s, a) for s, a in requests if a]
    if not done:
        raise ValueError("no request succeeded")
    return sum(len(a) for _, a in done) / sum(a[-1] - s for s, a in done)
''',
        # Does not skip failed requests.
        '''
def throughput(requests):
    if not requests:
        raise ValueError("no request")
    tokens = sum(len(a) for _, a in requests)
    return tokens / (max(a[-1] for _, a in requests) - min(s for s, _ in requests))
''',
        # Hard-coded to the visible example: its one request's rate.
        '''
def throughput(requests):
    sent, arrivals = requests[0]
    if not arrivals:
        raise ValueError("no request succeeded")
    return len(arrivals) / (arrivals[-1] - sent)
''',
    ],
    "stream_text": [
        # Does not stop at [DONE].
        '''
def stream_text(lines):
    import json
    out = []
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            continue
        for choice in json.loads(payload).get("choices") or []:
            out.append(choice.get("text") or "")
    return "".join(out)
''',
        # Assumes every chunk has a choice (the usage-only chunk breaks it).
        '''
def stream_text(lines):
    import json
    out = []
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        out.append(json.loads(payload)["choices"][0]["text"] or "")
    return "".join(out)
''',
        # Assumes "data: " always has a space after the colon.
        '''
def stream_text(lines):
    import json
    out = []
    for line in lines:
        if not line.startswith("data: "):
            continue
        payload = line[6:]
        if payload == "[DONE]":
            break
        for choice in json.loads(payload).get("choices") or []:
            out.append(choice.get("text") or "")
    return "".join(out)
''',
        # Hard-coded to the visible example's format: the "text" fields picked out by a regular
        # expression, wherever they are (after [DONE] too).
        '''
def stream_text(lines):
    import re
    return "".join(re.findall(r'"text": "([^"]*)"', "\\n".join(lines)))
''',
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "ttft_and_itl": ["inferlab.serving.latency:RequestTrace.ttft",
                     "inferlab.serving.latency:RequestTrace.itls"],
    "throughput": ["inferlab.serving.latency:summarize"],
    "stream_text": ["inferlab.serving.clients:iter_sse_data",
                    "inferlab.serving.clients:chunk_text"],
    "load_generator": ["inferlab.serving.loadgen:arrival_times",
                       "inferlab.serving.loadgen:open_loop", "inferlab.serving.loadgen:drive"],
}

# Shortcuts the *visible* tests already reject (tests/test_notebooks.py checks that they do).
SHORTCUTS = {
    "load_generator": [
        # TTFT counted from the arrival: the client's queue charged to the server.
        _LOADGEN.replace('"ttft": times[0] - sent if times else None,',
                         '"ttft": times[0] - self.arrivals[i] if times else None,'),
        # The first request at time 0 (gaps counted after it).
        _LOADGEN.replace("""            t += rng.expovariate(rate)
            self.arrivals.append(t)""", """            self.arrivals.append(t)
            t += rng.expovariate(rate)"""),
        # The rate taken as the mean gap.
        _LOADGEN.replace("rng.expovariate(rate)", "rng.expovariate(1 / rate)"),
        # A slot never frees: the cap counts every request ever sent.
        _LOADGEN.replace("len(self.sent) - len(self.ended) < self.max_concurrency",
                         "len(self.sent) < self.max_concurrency"),
        # Latency from the send, not from the arrival.
        _LOADGEN.replace('"latency": self.ended[i] - self.arrivals[i]})',
                         '"latency": self.ended[i] - sent})'),
        # Lets one request more than the cap through when several are released at once.
        _LOADGEN.replace("""            released.append(self.next)
            self.next += 1
        return released""", """            released.append(self.next)
            self.next += 1
        if released and self.next < len(self.arrivals) and self.arrivals[self.next] <= now:
            self.sent[self.next] = now
            self.tokens[self.next] = []
            released.append(self.next)
            self.next += 1
        return released"""),
        # Every request sent at its arrival: no cap.
        _LOADGEN.replace(" and len(self.sent) - len(self.ended) < self.max_concurrency)", ")"),
        # The library call: NumPy's exponential gaps (another generator: other arrival times).
        _LOADGEN.replace("""        rng, t = random.Random(seed), 0.0
        self.arrivals = []
        for _ in range(n_requests):
            t += rng.expovariate(rate)
            self.arrivals.append(t)""", """        import numpy as np
        gaps = np.random.default_rng(seed).exponential(1 / rate, n_requests)
        self.arrivals = np.cumsum(gaps).tolist()"""),
    ],
}
