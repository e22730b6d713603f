"""Plausible wrong answers for lesson 10; each passes the visible tests and fails the hidden
ones."""

MUTANTS = {
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
}
