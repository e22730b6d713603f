"""inferlab.lab.scripted_device: a pretend asynchronous device whose clock moves only on sync."""
import pytest

from inferlab.lab import scripted_device as dev


def test_work_is_queued_until_synchronize():
    work = dev.workload([[1, 2]], [[3, 4, 5]], [0.5, 2.0])
    dev.synchronize()
    start = dev.clock()
    assert dev.generate(work, 3) == [([1, 2], [3, 4, 5])]
    assert dev.clock() == start, "generate returns before the work is done"
    dev.synchronize()
    assert dev.clock() - start == 0.5
    dev.generate(work, 3)
    dev.generate(work, 3)                 # calls past the script repeat its last cost
    dev.synchronize("cuda")               # a device argument is accepted and ignored
    assert dev.clock() - start == 0.5 + 2.0 + 2.0
    assert work[0]["calls"] == 3


def test_workload_costs_outputs_and_checks():
    work = dev.workload([[1], [2, 3]], [[4, 0, 0], [5, 6, 7]], [1.0, 3.0])
    assert [r["seconds"] for r in work] == [[1.0, 3.0], [0.0]]
    dev.synchronize()
    start = dev.clock()
    assert dev.generate(work, 2) == [([1], [4, 0]), ([2, 3], [5, 6])]   # cut at max_new_tokens
    dev.synchronize()
    assert dev.clock() - start == 1.0
    with pytest.raises(ValueError):
        dev.workload([[1]], [], [1.0])
    with pytest.raises(ValueError):
        dev.request([1], [2], [])
    with pytest.raises(ValueError):
        dev.request([1], [2], [-1.0])
