"""Gymnasium's seeding for B seeds at once: `np_random(s).uniform(low, high, size)` vectorised.

Why: every classic-control `reset(seed=s)` draws its start state from
`Generator(PCG64(SeedSequence(s)))` (what `gymnasium.utils.seeding.np_random` and
`numpy.random.default_rng` build). Building that generator costs about 15 us per environment in
Python, so a per-environment loop makes the reset of B = 1,024 environments cost 15-40 ms, a
sizeable share of a CartPole rollout. Here the same three algorithms run on `(B,)` numpy arrays:

  * SeedSequence (pool size 4): the seed's 32-bit words hashed into a pool and mixed
    (`hashmix` / `mix` with numpy's constants; the hash multipliers do not depend on the data, so
    they are one sequence shared by all seeds), then `generate_state(4, uint64)`;
  * PCG64: a 128-bit LCG (`state = state * MULT + inc mod 2**128`) seeded as numpy seeds it, its
    XSL-RR output; the 128-bit numbers are (hi, lo) pairs of uint64 arrays;
  * `uniform`: `low + (high - low) * ((next64 >> 11) * 2**-53)`, element by element in order.

The result equals numpy's bit for bit (tests/test_envs.py checks seeds from 0 to 2**63 - 1).
"""

from __future__ import annotations

import numpy as np

_M32 = np.uint64(0xFFFFFFFF)
_U32 = np.uint32
# numpy/random/bit_generator.pyx
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = _U32(0xCA01F9DD), _U32(0x4973F715)
_XSHIFT = _U32(16)
_POOL = 4
# PCG_DEFAULT_MULTIPLIER_128 (numpy/random/src/pcg64/pcg64.h) as (hi, lo)
_PCG_MULT = (np.uint64(2549297995355413924), np.uint64(4865540595714422341))


def _hash_consts(init: int, mult: int, n: int) -> list[np.uint32]:
    """The running hash constant before each of n hashmix calls (data-independent)."""
    out, h = [], init
    for _ in range(n):
        out.append(_U32(h))
        h = (h * mult) & 0xFFFFFFFF
    return out


# mix_entropy calls hashmix 4 (fill) + 12 (cross-mix) times; generate_state(4 uint64) 8 times.
_CONST_A = _hash_consts(_INIT_A, _MULT_A, _POOL + _POOL * (_POOL - 1) + 1)
_CONST_B = _hash_consts(_INIT_B, _MULT_B, 2 * _POOL + 1)


def _hashmix(value: np.ndarray, k: int) -> np.ndarray:
    value = value ^ _CONST_A[k]
    value = value * _CONST_A[k + 1]
    return value ^ (value >> _XSHIFT)


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = _MIX_MULT_L * x - _MIX_MULT_R * y
    return result ^ (result >> _XSHIFT)


def _seed_sequence_state(seeds: np.ndarray) -> list[np.ndarray]:
    """`SeedSequence(s).generate_state(4, np.uint64)` for each seed -> 4 arrays `(B,)` uint64.
    Seeds below 2**64 have at most two 32-bit words; the other pool words hash a 0, which is what
    numpy does for entropy shorter than the pool."""
    words = [(seeds & _M32).astype(_U32), (seeds >> np.uint64(32)).astype(_U32)]
    zero = np.zeros_like(words[0])
    k = 0
    pool = []
    for i in range(_POOL):
        pool.append(_hashmix(words[i] if i < 2 else zero, k))
        k += 1
    for i_src in range(_POOL):
        for i_dst in range(_POOL):
            if i_src != i_dst:
                pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], k))
                k += 1
    state32 = []
    for i in range(2 * _POOL):
        value = pool[i % _POOL] ^ _CONST_B[i]
        value = value * _CONST_B[i + 1]
        state32.append((value ^ (value >> _XSHIFT)).astype(np.uint64))
    # little-endian pairs of 32-bit words -> 64-bit words
    return [state32[2 * j] | (state32[2 * j + 1] << np.uint64(32)) for j in range(_POOL)]


def _mul64(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full 64 x 64 -> 128-bit product as (hi, lo), from 32-bit halves."""
    a0, a1 = a & _M32, a >> np.uint64(32)
    b0, b1 = b & _M32, b >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & _M32) + (p10 & _M32)
    lo = (mid << np.uint64(32)) | (p00 & _M32)
    hi = p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))
    return hi, lo


def _step(state: tuple[np.ndarray, np.ndarray], inc: tuple[np.ndarray, np.ndarray]):
    """state * PCG_MULT + inc (mod 2**128)."""
    sh, sl = state
    mh, ml = _PCG_MULT
    hi, lo = _mul64(sl, np.broadcast_to(ml, sl.shape))
    hi = hi + sl * mh + sh * ml  # cross terms: only their low 64 bits reach the result
    new_lo = lo + inc[1]
    carry = (new_lo < lo).astype(np.uint64)
    return hi + inc[0] + carry, new_lo


def _output(state: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """PCG XSL-RR: rotate (hi ^ lo) right by the top 6 bits of the state."""
    hi, lo = state
    value = hi ^ lo
    rot = hi >> np.uint64(58)
    return (value >> rot) | (value << ((np.uint64(64) - rot) & np.uint64(63)))


def gymnasium_uniform_np(seeds, low, high, size: int) -> np.ndarray:
    """`[np.random.default_rng(s).uniform(low, high, size) for s in seeds]` as one `(B, size)`
    float64 array; `low` / `high` are scalars or length-`size` sequences (Pendulum's bounds)."""
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)  # (B,)
    low = np.broadcast_to(np.asarray(low, dtype=np.float64), (size,))
    span = np.broadcast_to(np.asarray(high, dtype=np.float64), (size,)) - low
    with np.errstate(over="ignore"):
        s = _seed_sequence_state(seeds)
        init_state, init_seq = (s[0], s[1]), (s[2], s[3])
        # pcg_setseq_128_srandom_r: inc = (initseq << 1) | 1; state = 0; step; state += init; step
        inc = (
            (init_seq[0] << np.uint64(1)) | (init_seq[1] >> np.uint64(63)),
            (init_seq[1] << np.uint64(1)) | np.uint64(1),
        )
        zero = np.zeros_like(seeds)
        state = _step((zero, zero), inc)
        lo = state[1] + init_state[1]
        carry = (lo < state[1]).astype(np.uint64)
        state = _step((state[0] + init_state[0] + carry, lo), inc)
        out = np.empty((seeds.shape[0], size), dtype=np.float64)
        for j in range(size):
            state = _step(state, inc)
            unit = (_output(state) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
            out[:, j] = low[j] + span[j] * unit
    return out
