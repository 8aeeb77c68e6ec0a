"""Seeds and stream keys: every random number of a run derives from its config's seed.

A generator is seeded by :func:`derive_seed` from the run's seed and a *purpose* (what it feeds:
"init" of instance k, the data of instance k, ...), never from a position in a batch of unrelated
work, so the same config gives the same numbers however it is chunked, stacked or distributed.
"""

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed derived from the run's seed and a purpose (stable across Python versions)."""
    digest = hashlib.blake2b(repr((seed, *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def stream_key(seed: int, *keys: object) -> int:
    """The key of a counter-based stream of the CPU kernels (:mod:`superposition.kernels`), drawn
    from a generator seeded by ``derive_seed(seed, *keys)``: name the stream by what it feeds (an
    instance's identity, not its position), and it is the same whatever else is trained."""
    generator = torch.Generator().manual_seed(derive_seed(seed, *keys))
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())
