import torch

from lra.bench.measure import Settings, Workload, measure

CPU = torch.device("cpu")
QUICK = Settings(warmup=1, repeats=3, max_point_s=1.0)


def test_a_working_step_is_timed_by_wall_clock_on_cpu():
    x = torch.randn(64, 64)
    result = measure(lambda: Workload(lambda: x @ x), CPU, QUICK)
    assert result.status == "ok" and result.time_ms > 0 and result.repeats == 3
    assert result.peak_mib is None  # no allocator statistics on CPU


def test_repeats_are_cut_to_fit_the_time_per_point():
    x = torch.randn(64, 64)

    def slow_step():
        torch.ones(1)
        import time
        time.sleep(0.05)

    result = measure(lambda: Workload(slow_step), CPU, Settings(warmup=1, repeats=50, max_point_s=0.12))
    assert result.status == "ok" and 1 <= result.repeats <= 3
    assert x is not None


def test_failures_are_recorded_with_their_message():
    def failing_step():
        raise ValueError("head_dim 7 not supported")

    result = measure(lambda: Workload(failing_step), CPU, QUICK)
    assert result.status == "error" and result.note == "ValueError: head_dim 7 not supported"
    build_fails = measure(lambda: 1 / 0, CPU, QUICK)
    assert build_fails.status == "error" and "ZeroDivisionError" in build_fails.note


def test_out_of_memory_is_its_own_status():
    def cuda_oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    def cpu_oom():
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")

    for step in (cuda_oom, cpu_oom):
        result = measure(lambda s=step: Workload(s), CPU, QUICK)
        assert result.status == "oom" and "allocate" in result.note
