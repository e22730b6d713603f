"""inferlab.lab.bench: timing, bandwidth, roofline, peak memory, threads."""
import pytest
import torch

from inferlab.lab import bench


def test_time_fn_warms_up_and_repeats():
    calls = []
    timing = bench.time_fn(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7 and len(timing.times) == 5
    assert timing.min <= timing.median
    with pytest.raises(ValueError):
        bench.time_fn(lambda: None, repeats=0)


def test_median_ignores_an_outlier():
    timing = bench.Timing([1.0, 1.1, 0.9, 50.0, 1.0])
    assert timing.median == 1.0 and timing.spread > 40


def test_throughput_and_roofline_arithmetic():
    assert bench.tokens_per_second(100, 2.0) == 50
    assert bench.achieved_bandwidth(1e9, 20) == 2e10
    assert bench.decode_roofline(13.48e9, 4.26e12) == pytest.approx(316, rel=0.01)
    with pytest.raises(ValueError):
        bench.decode_roofline(0, 1e9)
    with pytest.raises(ValueError):
        bench.tokens_per_second(10, 0)


def test_measured_bandwidth_is_plausible():
    bandwidth = bench.measure_bandwidth("cpu", megabytes=64, repeats=2)
    assert 1e8 < bandwidth < 1e13  # between 0.1 GB/s and 10 TB/s


def test_peak_memory_sees_a_large_allocation():
    def allocate():
        x = torch.ones(64 * 1024 * 1024 // 4 * 4)  # 256 MiB
        x += 1
        return x.sum().item()
    _, extra = bench.peak_memory(allocate, device="cpu")
    assert extra > 128 * 1024 * 1024


@pytest.mark.parametrize("name,key", [("NVIDIA H100 80GB HBM3", "H100 SXM"),
                                      ("NVIDIA H100 PCIe", "H100 PCIe"),
                                      ("NVIDIA A100-SXM4-80GB", "A100 80GB"), ("Tesla T4", "T4"),
                                      ("NVIDIA H200", "H200"), ("NVIDIA A10G", "A10G")])
def test_datasheet_matching(name, key):
    assert bench.datasheet_for(name)[0] == key


def test_unknown_gpu_has_no_datasheet():
    assert bench.datasheet_for("Some Future Accelerator") is None


def test_pin_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("INFERLAB_THREADS", "1")
        assert bench.pin_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("INFERLAB_THREADS")
        assert 1 <= bench.pin_threads() <= 8
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("capability, name, dtype, scale", [
    ((7, 5), "Tesla T4", torch.float16, 320 / 3350),
    ((8, 0), "NVIDIA A100-SXM4-80GB", torch.bfloat16, 2039 / 3350),
    ((9, 0), "NVIDIA H100 80GB HBM3", torch.bfloat16, 1.0),
    ((9, 0), "NVIDIA H200", torch.bfloat16, 1.0),
])
def test_gpu_dtype_and_workload_scale(monkeypatch, capability, name, dtype, scale):
    """bf16 only where the card computes in it natively; workloads shrink with bandwidth."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert bench.compute_dtype("cuda") is dtype
    assert bench.gpu_workload_scale("cuda") == pytest.approx(scale)


def test_cpu_dtype_and_scale():
    assert bench.compute_dtype("cpu") is torch.float32
    assert bench.gpu_workload_scale("cpu") == 1.0
