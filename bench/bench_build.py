"""Build time of a model and the share of it spent in the build-time probe (:mod:`sdpnet.models.probe`).

Run: python bench/bench_build.py [--runs N]. For each spec, in one process and interleaved: the median time of
``sdpnet.build`` (which probes every layer), and the median time of probing the built model's layers again
(:func:`sdpnet.models.probe.probe_layers` on its plan and modules, the same call ``build`` makes), so the table
gives the probe's cost as a fraction of the build without it. Target: under 10%.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import sdpnet  # noqa: E402
from sdpnet.models.probe import probe_layers, signature  # noqa: E402

SPECS = {
    "sdpnet_xl": "sdpnet_xl",
    "300 layers, conv": "P4(d=64)-[DWC3+MLP,CONV3,DWC5+MLP(r=2.0),CM7]x50-GAP+LIN",
    "250 layers, with ENC": "P4(d=64)+CLS1-[DWC3+MLP,ENC(h=4),DWC5,ENC(r=2.0)]x50-MLP",
}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    sdpnet.build("P4-DWC3-GAP+LIN")   # first-use costs (imports, functional_call) out of the figures
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    print("| spec | layers | distinct probes | build (with probe) ms | probe ms | probe / (build - probe) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, spec in SPECS.items():
        builds, probes = [], []
        for _ in range(args.runs):
            model = None

            def build() -> None:
                nonlocal model
                model = sdpnet.build(spec)

            builds.append(timed(build))
            modules = [*model.stem, *model.body, model.pool, *model.head]
            probes.append(timed(lambda: probe_layers(model.plan, modules)))
        b, p = statistics.median(builds), statistics.median(probes)
        layers = model.plan.layers
        outs = [layers[i + 1].grid if i + 1 < len(layers) else layer.grid for i, layer in enumerate(layers)]
        distinct = len({signature(layer, m, g) for layer, m, g in zip(layers, modules, outs)})
        print(f"| {name} | {len(layers)} | {distinct} | {1e3 * b:,.1f} | {1e3 * p:,.1f} | "
              f"{p / (b - p):.1%} |")


if __name__ == "__main__":
    main()
