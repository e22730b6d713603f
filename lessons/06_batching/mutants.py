"""Plausible wrong answers for lesson 06; each passes the visible tests, fails the hidden ones."""

CONTEXT = "from inferlab.engine import SequenceStatus\n"

_PREFILL = '''
    bm = sched.block_manager
    admitted, tokens = [], 0
    while sched.waiting and len(sched.running) < sched.max_num_seqs:
        seq = sched.waiting[0]
        if admitted and tokens + len(seq) > sched.max_num_batched_tokens:
            break
        if not bm.can_allocate(seq):
            break
        bm.allocate(seq)
        tokens += len(seq)
        seq.status = SequenceStatus.RUNNING
        sched.waiting.popleft()
        sched.running.append(seq)
        admitted.append(seq)
    if admitted:
        return admitted, True
'''

_DECODE = '''
    scheduled = []
    while sched.running:
        seq = sched.running.popleft()
        while not bm.can_append(seq):
            if sched.running:
                sched.preempt(sched.running.pop())
            else:
                sched.preempt(seq)
                break
        else:
            sched.append_slot(seq)
            scheduled.append(seq)
    sched.running.extend(scheduled)
    return scheduled, False
'''

MUTANTS = {
    "schedule_step": [
        # Preempts the oldest running sequence instead of the newest.
        "def schedule_step(sched):" + _PREFILL + _DECODE.replace(
            "sched.preempt(sched.running.pop())", "sched.preempt(sched.running.popleft())"),
        # Ignores the token budget.
        "def schedule_step(sched):" + _PREFILL.replace(
            "        if admitted and tokens + len(seq) > sched.max_num_batched_tokens:\n"
            "            break\n", "") + _DECODE,
        # Ignores free blocks at admission.
        "def schedule_step(sched):" + _PREFILL.replace(
            "        if not bm.can_allocate(seq):\n            break\n", "") + _DECODE,
        # Lets later sequences overtake one that does not fit.
        '''
def schedule_step(sched):
    bm = sched.block_manager
    admitted, tokens = [], 0
    for seq in list(sched.waiting):
        if len(sched.running) >= sched.max_num_seqs:
            break
        if admitted and tokens + len(seq) > sched.max_num_batched_tokens:
            continue
        if not bm.can_allocate(seq):
            continue
        bm.allocate(seq)
        tokens += len(seq)
        seq.status = SequenceStatus.RUNNING
        sched.waiting.remove(seq)
        sched.running.append(seq)
        admitted.append(seq)
    if admitted:
        return admitted, True
''' + _DECODE,
        # Grows sequences through the block manager directly: copy-on-write pairs are lost.
        "def schedule_step(sched):" + _PREFILL
        + _DECODE.replace("sched.append_slot(seq)", "bm.append_slot(seq)"),
        # A lone sequence without room is silently dropped instead of preempted.
        "def schedule_step(sched):" + _PREFILL + _DECODE.replace(
            "                sched.preempt(seq)\n                break", "                break"),
        # Decodes the running sequences before admitting newcomers.
        '''
def schedule_step(sched):
    bm = sched.block_manager
    if sched.running:
''' + "\n".join("    " + line if line else line for line in _DECODE.splitlines()) + '''
    admitted = []
    while sched.waiting and len(sched.running) < sched.max_num_seqs:
        seq = sched.waiting[0]
        if not bm.can_allocate(seq):
            break
        bm.allocate(seq)
        seq.status = SequenceStatus.RUNNING
        sched.waiting.popleft()
        sched.running.append(seq)
        admitted.append(seq)
    return admitted, True
''',
        # Hard-coded to the visible example: admits everything waiting, then decodes everything
        # running - no limits, no blocks checked, no preemption.
        '''
def schedule_step(sched):
    if sched.waiting:
        admitted = list(sched.waiting)
        for seq in admitted:
            sched.block_manager.allocate(seq)
            seq.status = SequenceStatus.RUNNING
        sched.waiting.clear()
        sched.running.extend(admitted)
        return admitted, True
    for seq in sched.running:
        sched.append_slot(seq)
    return list(sched.running), False
''',
    ],
}

# The course's own implementations of the exercises that have another name in the package
# (those with the same name are found by name); hidden from the sandbox while grading.
REFERENCES = {
    "schedule_step": ["inferlab.engine.scheduler:continuous_step",
                      "inferlab.engine.scheduler:Scheduler.schedule",
                      "inferlab.engine.scheduler:Scheduler.schedule_prefill",
                      "inferlab.engine.scheduler:Scheduler.schedule_decode"],
}
