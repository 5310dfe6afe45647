"""Seed purposes of the audit: ``derive_seed(study.seed, purpose, *keys)``
(:class:`numpy.random.SeedSequence`; strings such as a variant or an attack enter as CRC-32
keys). Every random quantity derives from the master seed, its purpose and the identity of
what it is for (model, variant, attack), never from the order of execution."""

from __future__ import annotations

__all__ = ["PURPOSES"]

KEEP, INIT, CALIB, QUANT, BOOT, SPLIT, SYNTH, BAND, TESTS = range(1, 10)

#: Name → purpose, as written to results.json.
PURPOSES = {
    "keep": KEEP,
    "init": INIT,
    "calibration": CALIB,
    "quant": QUANT,
    "bootstrap": BOOT,
    "split": SPLIT,
    "synthetic": SYNTH,
    "band": BAND,
    "tests": TESTS,
}
