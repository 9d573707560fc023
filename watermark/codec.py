"""Payload coding: 64 data bits -> keyed check -> BCH codeword -> keyed scrambling, and back.

Why this shape: the payload must come back *exactly* or not at all. A BCH code (``bchlib``,
GF(2^8), t = 20) repairs the bit errors that compression and resampling leave; a keyed
24-bit check (HMAC-SHA256 of the payload under the key) then turns "a random word happened to
decode" into a probability we can compute and report instead of a hope.

False-positive arithmetic (documented in README.md): for an unmarked image the demodulated hard
bits are, under the scrambling by a key-derived pseudo-random sequence, uniform and independent.
One BCH decode attempt then succeeds with probability at most ``V(n, t) / 2**(n - k)`` (the volume
of the Hamming balls around all 2**k codewords over the 2**n words), and the check passes with
probability ``2**-24`` independently. With ``A`` decode attempts per image (lattice candidates x
dihedral candidates x Chase flips) the union bound gives ``P_fp <= A * V(n, t) * 2**-(n - k) *
2**-24``.
"""
from __future__ import annotations

import hashlib
import hmac
import math
from functools import lru_cache

import numpy as np

PAYLOAD_BYTES = 8
PAYLOAD_BITS = PAYLOAD_BYTES * 8
CHECK_BITS = 24
DATA_BITS = PAYLOAD_BITS + CHECK_BITS  # 88 bits = 11 bytes
BCH_T = 20
BCH_M = 8


@lru_cache(maxsize=1)
def _bch():
    import bchlib

    return bchlib.BCH(BCH_T, m=BCH_M)


def ecc_bits() -> int:
    return int(_bch().ecc_bits)


def code_bits() -> int:
    """Length of the coded (and scrambled) bit vector carried by the watermark."""
    return DATA_BITS + ecc_bits()


def _check(payload: bytes, key: bytes) -> bytes:
    return hmac.new(key, b"synthguard-wm-check|" + payload, hashlib.sha256).digest()[: CHECK_BITS // 8]


def _scrambler(key: bytes, n: int) -> np.ndarray:
    seed = hashlib.sha256(b"synthguard-wm-scramble|" + key).digest()
    return np.random.default_rng(np.frombuffer(seed, dtype=np.uint32)).integers(0, 2, n, dtype=np.uint8)


def _bits(data: bytes, n: int | None = None) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))
    return bits if n is None else bits[:n]


def encode(payload: bytes, key: bytes) -> np.ndarray:
    """8 payload bytes -> scrambled codeword bits (uint8 0/1, length :func:`code_bits`)."""
    if len(payload) != PAYLOAD_BYTES:
        raise ValueError(f"payload must be exactly {PAYLOAD_BYTES} bytes, got {len(payload)}")
    data = bytearray(payload + _check(payload, key))
    ecc = _bch().encode(data)
    bits = np.concatenate([_bits(data), _bits(ecc, ecc_bits())])
    return bits ^ _scrambler(key, bits.size)


def _try_decode(hard: np.ndarray, key: bytes) -> tuple[bytes, int] | None:
    """Hard scrambled bits -> (payload, corrected bit count) when BCH and the keyed check agree."""
    bch = _bch()
    n_ecc = ecc_bits()
    plain = hard ^ _scrambler(key, hard.size)
    data = bytearray(np.packbits(plain[:DATA_BITS]).tobytes())
    ecc_bits_arr = np.zeros(bch.ecc_bytes * 8, dtype=np.uint8)
    ecc_bits_arr[:n_ecc] = plain[DATA_BITS:]
    ecc = bytearray(np.packbits(ecc_bits_arr).tobytes())
    nerr = bch.decode(data, ecc)
    if nerr < 0:
        return None
    if nerr:
        bch.correct(data, ecc)
    payload, check = bytes(data[:PAYLOAD_BYTES]), bytes(data[PAYLOAD_BYTES:])
    if not hmac.compare_digest(check, _check(payload, key)):
        return None
    return payload, int(nerr)


def decode_soft(soft: np.ndarray, key: bytes, chase_bits: int = 4) -> tuple[bytes, int, int] | None:
    """Soft values (positive = bit 1) -> (payload, bit_errors, attempts) or None.

    Chase-II style: after the plain hard decision fails, flip every combination of the
    ``chase_bits`` least reliable positions and retry. Every attempt is counted by the caller in
    the false-positive bound (:func:`attempts_per_candidate`).
    """
    soft = np.asarray(soft, dtype=np.float64)
    hard = (soft > 0).astype(np.uint8)
    weakest = np.argsort(np.abs(soft))[:chase_bits]
    for mask in range(1 << chase_bits):
        trial = hard.copy()
        for i in range(chase_bits):
            if mask >> i & 1:
                trial[weakest[i]] ^= 1
        got = _try_decode(trial, key)
        if got is not None:
            payload, _ = got
            errors = int(np.count_nonzero(encode(payload, key) != hard))
            return payload, errors, mask + 1
    return None


def attempts_per_candidate(chase_bits: int = 4) -> int:
    return 1 << chase_bits


@lru_cache(maxsize=None)
def false_positive_per_attempt() -> float:
    """Probability that one decode attempt on uniform random bits yields a valid, checked payload."""
    n, t = code_bits(), BCH_T
    parity = n - DATA_BITS
    ball = sum(math.comb(n, i) for i in range(t + 1))
    return ball * 2.0 ** (-parity) * 2.0 ** (-CHECK_BITS)
