import subprocess
import sys

import numpy as np
import pytest
import torch

from losslab import backend


def test_device_defaults_to_an_available_device(monkeypatch):
    monkeypatch.delenv("LOSSLAB_DEVICE", raising=False)
    dev = backend.device()
    expected = "cuda" if torch.cuda.is_available() else ("mps" if backend._mps_available() else "cpu")
    assert dev.type == expected


def test_environment_overrides_the_choice(monkeypatch):
    monkeypatch.setenv("LOSSLAB_DEVICE", "CPU")
    assert backend.device() == torch.device("cpu")


def test_prefer_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("LOSSLAB_DEVICE", "not-a-device")
    assert backend.device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "cpu0"])
def test_malformed_device_names_are_rejected_with_the_variable_named(monkeypatch, bad):
    monkeypatch.setenv("LOSSLAB_DEVICE", bad)
    with pytest.raises(ValueError, match="LOSSLAB_DEVICE"):
        backend.device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_unavailable_cuda_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setenv("LOSSLAB_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        backend.device()


def test_array_module_is_numpy_on_cpu():
    assert backend.array_module("cpu") is np


def test_cupy_is_not_imported_unless_used():
    code = (
        "import sys, losslab, losslab.backend as b, losslab.explore.demo, losslab.questions;"
        "b.array_module('cpu'); b.describe('cpu');"
        "print('cupy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_seed_everything_makes_every_generator_repeat():
    def draw():
        import random

        return random.random(), float(np.random.rand()), float(torch.rand(1))

    backend.seed_everything(7)
    first = draw()
    backend.seed_everything(7)
    assert draw() == first
    backend.seed_everything(8)
    assert draw() != first


@pytest.mark.parametrize("bad, err", [(1.5, TypeError), ("3", TypeError), (True, TypeError), (-1, ValueError), (2**32, ValueError)])
def test_bad_seeds_are_rejected(bad, err):
    with pytest.raises(err, match="seed"):
        backend.seed_everything(bad)


def test_generator_depends_only_on_its_seed():
    a = torch.randn(5, generator=backend.generator(3))
    torch.randn(100)  # global state must not matter
    b = torch.randn(5, generator=backend.generator(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.randn(5, generator=backend.generator(4)))


def test_describe_names_version_torch_and_device():
    line = backend.describe("cpu")
    assert line.startswith("losslab ")
    assert f"torch {torch.__version__.split('+')[0]}" in line
    assert f"CPU ({torch.get_num_threads()} threads)" in line
    assert "\n" not in line


def test_single_thread_restores_the_thread_count_even_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with backend.single_thread("cpu"):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_chunks_are_cache_sized_on_a_cpu_and_checked():
    assert backend.chunk_elements("cpu") == backend.CPU_CHUNK_ELEMENTS
    with pytest.raises(ValueError, match="live_tensors"):
        backend.chunk_elements("cpu", live_tensors=0)
    with pytest.raises(ValueError, match="fraction"):
        backend.chunk_elements("cpu", fraction=1.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_chunks_on_a_gpu_follow_free_memory():
    free, _ = torch.cuda.mem_get_info()
    n = backend.chunk_elements("cuda", dtype=torch.float32, live_tensors=8, fraction=0.5)
    assert n >= backend.CPU_CHUNK_ELEMENTS
    assert n * 4 * 8 <= free
