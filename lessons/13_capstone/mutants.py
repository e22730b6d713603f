"""Plausible wrong answers for lesson 13; each passes the visible tests and fails the hidden ones."""

CONTEXT = "import statistics\nimport time\n"

_RIGHT = '''
def measure_row(generate_fn, prompts, max_new_tokens, eos_ids, *, warmup=1, repeats=3, sync,
                clock=time.perf_counter):
    if repeats < 1 or warmup < 0:
        raise ValueError("need repeats >= 1 and warmup >= 0")
    for _ in range(warmup):
        generate_fn(prompts, max_new_tokens)
    times = []
    for _ in range(repeats):
        sync()
        start = clock()
        outputs = generate_fn(prompts, max_new_tokens)
        sync()
        times.append(clock() - start)
    stop = set(eos_ids)
    tokens = 0
    for _prompt_ids, output_ids in outputs:
        for token in output_ids:
            tokens += 1
            if token in stop:
                break
    ordered = sorted(times)
    position = 0.9 * (len(ordered) - 1)
    i = int(position)
    upper = ordered[min(i + 1, len(ordered) - 1)]
    p90 = ordered[i] + (position - i) * (upper - ordered[i])
    p50 = statistics.median(times)
    return {"tokens": tokens, "times": times, "p50_s": p50, "p90_s": p90,
            "tokens_per_s": tokens / p50}
'''

_COUNT = '''    for _prompt_ids, output_ids in outputs:
        for token in output_ids:
            tokens += 1
            if token in stop:
                break
'''

_TABLE = '''
def stack_table(rows, dollars_per_hour):
    if any(row["tokens_per_s"] <= 0 for row in rows):
        raise ValueError("every row needs a positive tokens_per_s")
    first = rows[0]["tokens_per_s"]
    table = []
    for i, row in enumerate(rows):
        tps = row["tokens_per_s"]
        base = row.get("base")
        base = i - 1 if base is None else base
        step = 1.0 if i == 0 else tps / rows[base]["tokens_per_s"]
        table.append(dict(row, speedup=tps / first, step=step,
                          dollars_per_million=dollars_per_hour / (tps * 3600) * 1e6))
    return table
'''

MUTANTS = {
    "measure_row": [
        # The mean of the timed runs instead of their median.
        _RIGHT.replace("p50 = statistics.median(times)", "p50 = statistics.mean(times)"),
        # Every output id counted, the padding after an end-of-sequence id included.
        _RIGHT.replace(_COUNT, "    for _prompt_ids, output_ids in outputs:\n"
                               "        tokens += len(output_ids)\n"),
        # Stops at the end-of-sequence id without counting it.
        _RIGHT.replace("            tokens += 1\n            if token in stop:\n"
                       "                break\n",
                       "            if token in stop:\n                break\n"
                       "            tokens += 1\n"),
        # Assumes every request ran to max_new_tokens (what a forced-length benchmark counts).
        _RIGHT.replace(_COUNT, "    tokens = len(outputs) * max_new_tokens\n"),
        # One warm-up call, whatever `warmup` says.
        _RIGHT.replace("    for _ in range(warmup):\n        generate_fn(prompts, max_new_tokens)\n",
                       "    generate_fn(prompts, max_new_tokens)\n"),
        # No check of its arguments (no ValueError for repeats < 1 or warmup < 0).
        _RIGHT.replace('    if repeats < 1 or warmup < 0:\n'
                       '        raise ValueError("need repeats >= 1 and warmup >= 0")\n', ""),
        # Hard-coded to the visible example.
        '''
def measure_row(generate_fn, prompts, max_new_tokens, eos_ids, *, warmup=1, repeats=3, sync,
                clock=time.perf_counter):
    for _ in range(warmup + repeats):
        generate_fn(prompts, max_new_tokens)
    sync()
    return {"tokens": 8, "times": [2.0, 4.0, 3.0], "p50_s": 3.0, "p90_s": 3.8,
            "tokens_per_s": 8 / 3}
''',
    ],
    "stack_table": [
        # Cumulative and step multipliers swapped.
        _TABLE.replace("speedup=tps / first, step=step", "speedup=step, step=tps / first"),
        # Every row compared with the one before it, whatever its base.
        _TABLE.replace('        base = row.get("base")\n        base = i - 1 if base is None '
                       'else base\n', "        base = i - 1\n"),
        # The first row's step left at 0.
        _TABLE.replace("step = 1.0 if i == 0 else", "step = 0.0 if i == 0 else"),
        # No check of the throughputs.
        _TABLE.replace('    if any(row["tokens_per_s"] <= 0 for row in rows):\n'
                       '        raise ValueError("every row needs a positive tokens_per_s")\n',
                       ""),
        # Hard-coded to the visible example.
        '''
def stack_table(rows, dollars_per_hour):
    return [dict(rows[0], speedup=1.0, step=1.0, dollars_per_million=50.0),
            dict(rows[1], speedup=2.5, step=2.5, dollars_per_million=20.0)]
''',
    ],
}

# The course's own helpers that do part of the harness's work (found by other names than the
# exercise's): hidden from the sandbox while grading.
REFERENCES = {
    "measure_row": ["inferlab.lab.bench:time_fn", "inferlab.lab.bench:tokens_per_second"],
}

# Shortcuts the *visible* tests already reject (tests/test_notebooks.py checks that they do).
SHORTCUTS = {
    "measure_row": [
        # The package's own timer: real clock, the real device's synchronize - not the harness's.
        '''
def measure_row(generate_fn, prompts, max_new_tokens, eos_ids, *, warmup=1, repeats=3, sync,
                clock=time.perf_counter):
    from inferlab.lab.bench import time_fn
    box = {}
    timing = time_fn(lambda: box.update(out=generate_fn(prompts, max_new_tokens)),
                     warmup=warmup, repeats=repeats)
    tokens = sum(len(o) for _, o in box["out"])
    times = timing.times
    ordered = sorted(times)
    position = 0.9 * (len(ordered) - 1)
    i = int(position)
    p90 = ordered[i] + (position - i) * (ordered[min(i + 1, len(ordered) - 1)] - ordered[i])
    return {"tokens": tokens, "times": times, "p50_s": timing.median, "p90_s": p90,
            "tokens_per_s": tokens / timing.median}
''',
        # No synchronisation at all: times how fast the work was queued.
        _RIGHT.replace("        sync()\n        start = clock()", "        start = clock()")
              .replace("        sync()\n        times.append", "        times.append"),
        # Synchronises at the end only: the warm-up's queued work lands in the first timed run.
        _RIGHT.replace("        sync()\n        start = clock()", "        start = clock()"),
        # The warm-up calls timed too.
        _RIGHT.replace("    for _ in range(warmup):\n        generate_fn(prompts, max_new_tokens)\n",
                       "").replace("for _ in range(repeats):", "for _ in range(warmup + repeats):"),
        # The prompt's tokens counted as generated.
        _RIGHT.replace("    for _prompt_ids, output_ids in outputs:\n",
                       "    for prompt_ids, output_ids in outputs:\n"
                       "        tokens += len(prompt_ids)\n"),
        # The percentile of the unsorted times.
        _RIGHT.replace("ordered = sorted(times)", "ordered = list(times)"),
        # The nearest-rank 90th percentile instead of the interpolated one.
        _RIGHT.replace("p90 = ordered[i] + (position - i) * (upper - ordered[i])",
                       "p90 = ordered[min(len(ordered) - 1, -(-9 * len(ordered) // 10) - 1)]"),
    ],
    "stack_table": [
        # Dollars per million from tokens per second, forgetting the hour's 3,600 seconds.
        _TABLE.replace("(tps * 3600) * 1e6", "tps * 1e6"),
    ],
}
