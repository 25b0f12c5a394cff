"""Stochastic rounding's counter-based noise: the hash matches a pure-Python reference bit for
bit, is uniform, uncorrelated between neighbours, calls and seeds, and a stream continues
where its saved state left it."""

from __future__ import annotations

import math

import pytest
import torch

from hbfp_dse.formats import NoiseStream, quantize
from hbfp_dse.formats.noise import uniform_noise

CPU = torch.device("cpu")
N = 1 << 16


def mix32_reference(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x735A2D97) & 0xFFFFFFFF
    return x ^ (x >> 15)


def noise_reference(seed: int, call: int, index: int) -> float:
    m = 0xFFFFFFFF
    k0 = mix32_reference((seed & m) ^ mix32_reference(call & m))
    k1 = mix32_reference(k0 ^ (seed >> 32) ^ ((call >> 32) & m) ^ 0x9E3779B9)
    bits = mix32_reference(mix32_reference((index & m) ^ k0) ^ k1 ^ (index >> 32))
    return (bits >> 8) / 2**24


@pytest.mark.parametrize(
    ("seed", "call"), [(0, 0), (1, 7), (2**31 - 1, 123_456), (2**40 + 5, 2**33)]
)
def test_the_noise_is_the_reference_hash(seed: int, call: int) -> None:
    drawn = uniform_noise((3, 5, 7), NoiseStream(seed, calls=call).draw(CPU)).flatten()
    assert drawn.tolist() == [noise_reference(seed, call, i) for i in range(3 * 5 * 7)]
    assert drawn.dtype == torch.float32


def test_the_noise_of_a_seed_is_what_it_always_was() -> None:
    # Stored runs with stochastic rounding depend on these bits: they never change.
    first = uniform_noise((8,), NoiseStream(0).draw(CPU)) * 2**24
    assert first.int().tolist() == [
        1329799,
        15723374,
        3858929,
        9140358,
        15230150,
        9559911,
        5622293,
        2795121,
    ]


def test_the_noise_is_uniform_on_24_bits() -> None:
    u = uniform_noise((N,), NoiseStream(3).draw(CPU)).double()
    assert u.min() >= 0
    assert u.max() < 1
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / N)
    assert abs(u.var().item() - 1 / 12) < 0.005
    counts = torch.histc(u, bins=64, min=0, max=1)
    expected = N / 64
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 63 + 5 * math.sqrt(2 * 63)  # 63 degrees of freedom: 5 standard deviations


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_no_correlation_between_neighbours_calls_or_seeds() -> None:
    bound = 5 / math.sqrt(N)
    stream = NoiseStream(4)
    first, second = (uniform_noise((N,), stream.draw(CPU)) for _ in range(2))
    other_seed = uniform_noise((N,), NoiseStream(5).draw(CPU))
    assert abs(correlation(first[:-1], first[1:])) < bound  # neighbouring elements
    assert abs(correlation(first, second)) < bound  # consecutive calls
    assert abs(correlation(first[:-1], second[1:])) < bound  # a call is no shifted copy
    assert abs(correlation(first, other_seed)) < bound  # neighbouring seeds
    assert not torch.equal(first, second)


def test_a_stream_restored_from_its_state_continues_the_same_noise() -> None:
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    stream = NoiseStream(6)
    quantize(x, "hbfp4_b64", rounding="stochastic", noise=stream)
    saved = stream.state()
    expected = [quantize(x, "hbfp4_b64", rounding="stochastic", noise=stream) for _ in range(3)]
    restored = NoiseStream(0)
    restored.set_state(saved)
    assert (restored.seed, restored.calls) == (6, 1)
    for want in expected:
        assert torch.equal(quantize(x, "hbfp4_b64", rounding="stochastic", noise=restored), want)


def test_a_stream_counts_its_calls_and_refuses_bad_seeds() -> None:
    stream = NoiseStream(1)
    keys = [stream.draw(CPU).tolist() for _ in range(3)]
    assert keys == [[1, 0], [1, 1], [1, 2]]
    assert stream.calls == 3
    with pytest.raises(ValueError, match="seed -1"):
        NoiseStream(-1)


def test_host_draws_and_tensor_draws_are_one_stream() -> None:
    """The C kernels' host draws and the torch kernels' tensor draws take turns on one count,
    which a checkpoint's state and a restored state see alike."""
    stream = NoiseStream(4, calls=10)
    draws = [stream.draw_host(), stream.draw(CPU).tolist(), stream.draw_host()]
    assert draws == [(4, 10), [4, 11], (4, 12)]
    assert stream.state().tolist() == [4, 13]
    stream.set_state(torch.tensor([9, 2]))
    assert stream.draw_host() == (9, 2)
    assert stream.state().tolist() == [9, 3]
