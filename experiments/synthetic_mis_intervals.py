"""Old vs new MIS baseline on a finished synthetic study: widths and values.

Usage::

    .venv/bin/python experiments/synthetic_mis_intervals.py RUN_DIR [KEY ...]

For the settings KEY (default: k6-s1.5 k8-s2 k16-s3) of the study in RUN_DIR, re-estimates
the MIS of every variant the way earlier versions did — one split, 30 % of the runs tested,
Clopper–Pearson interval over the test decisions — from the same stored final weights, and
prints it beside the cross-fitted estimate of the study (5 folds, every run tested, cluster
bootstrap over runs): values, interval widths, and their ratio.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mis.security import discriminator_mis
from mis.store import RunStore
from mis.studies._common import derive_seed
from mis.studies.synthetic import Config
from mis.studies.synthetic.data import (
    DISCRIMINATOR,
    nonmember_set,
    setting_data,
    setting_keys,
    training_set,
)
from mis.studies.synthetic.jobs import chunk_name, chunks, discriminator_variants
from mis.studies.synthetic.model import logits, losses, quantize_flat


def inputs(cfg, store, k_modes, sigma, name):
    key = f"k{k_modes}-s{sigma:g}"
    final = np.concatenate(
        [
            np.asarray(store.load(f"{chunk_name(key, i)}/final_params"))
            for i in range(len(chunks(cfg)))
        ]
    )
    c = cfg.model.n_outputs
    params = quantize_flat(name, final, c, cfg.trajectory.params)
    mixture, _, _ = setting_data(cfg, k_modes, sigma)
    m = cfg.mis.n_members
    cols = [[] for _ in range(6)]
    for r in range(final.shape[0]):
        xs, ys = training_set(cfg, mixture, k_modes, sigma, r)
        xs, ys = xs[:m], ys[:m]
        xn, yn = nonmember_set(cfg, mixture, k_modes, sigma, r)
        both = losses(logits(params[r : r + 1], np.concatenate([xs, xn]), c)[0],
                      np.concatenate([ys, yn]))  # fmt: skip
        for col, v in zip(cols, (xs, ys, both[:m], xn, yn, both[m:]), strict=True):
            col.append(v)
    return params, *(np.stack(col) for col in cols)


def main() -> None:
    run = Path(sys.argv[1])
    keys = sys.argv[2:] or ["k6-s1.5", "k8-s2", "k16-s3"]
    results = json.loads((run / "results.json").read_text())
    cfg = Config.from_dict(results["config"])
    store = RunStore(run / "store", create=False)
    by_key = {s["key"]: s for s in results["settings"]}
    mc = cfg.mis
    print("| setting | variant | old MIS [CP, 30 % split] | width | new MIS [cluster bootstrap, "
          "cross-fitted] | width | width new/old |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for key in keys:
        s = by_key[key]
        k_modes, sigma = s["k_modes"], s["sigma"]
        for q in discriminator_variants(cfg):
            d = inputs(cfg, store, k_modes, sigma, q)
            old = discriminator_mis(
                *d, n_classes=None if cfg.model.n_outputs == 1 else 2, folds=None,
                test_fraction=0.3, val_fraction=mc.val_fraction, hidden=mc.hidden,
                epochs=mc.epochs, batch_size=mc.batch_size, lr=mc.lr, patience=mc.patience,
                device="cpu", num_threads=1,
                rng=derive_seed(cfg.study.seed, DISCRIMINATOR, *setting_keys(k_modes, sigma)),
                progress=False,
            )  # fmt: skip
            o = old.mis_clopper_pearson
            n = s["mis"][q]["mis"]
            wo, wn = o.high - o.low, n["high"] - n["low"]
            ratios.append(wn / wo)
            print(f"| {key} | {q} | {o.estimate:.3f} [{o.low:.3f}, {o.high:.3f}] | {wo:.3f} | "
                  f"{n['estimate']:.3f} [{n['low']:.3f}, {n['high']:.3f}] | {wn:.3f} | "
                  f"{wn / wo:.2f} |", flush=True)  # fmt: skip
    print(f"\nmean width ratio new/old: {np.mean(ratios):.2f} over {len(ratios)} variants")


if __name__ == "__main__":
    main()
