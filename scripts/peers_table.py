#!/usr/bin/env python3
"""The peer bench's table: peers_table.py DIR MODEL... reads DIR/MODEL-peers.json (scripts/peers.py)
and prints one Markdown table per model, its targets with verdicts, and its manifest.

Speed-ups are paired per round (every engine ran in every round, interleaved): the geometric mean
of the per-round ratios with its 95% t-interval. "vs LibTorch fp32" is against the harness's
baseline: LibTorch's fp32 in the fastest of its deployable forms at that batch, chosen by the
harness's rule: frozen + optimize_for_inference unless another form is clearly faster (its fastest
round more than 10% shorter). "vs fastest fp32" is against the fp32 engine of any runtime whose
fastest round is shortest at that batch. Choices read each engine's fastest round, a statistic that
other load on the host does not move (it only adds time); the ms columns show medians."""
import json
import math
import os
import statistics
import sys

from bench_json import verdict

BATCHES = ("1", "16")
OTHER_FP32 = ("PyTorch eager fp32", "ONNX Runtime fp32", "OpenVINO f32")
PREFERRED = "TorchScript fp32 (frozen + optimize_for_inference)"
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 11: 2.20,
       12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09, 20: 2.09, 25: 2.06, 30: 2.04}


def t95(df):
    """The two-sided 95% Student t quantile (conservative between tabled degrees of freedom)."""
    if df > 30:
        return 1.96
    return T95[max(k for k in T95 if k <= df)]


def paired(base_seconds, seconds):
    """Geometric mean of base/engine per round, and its 95% t-interval."""
    logs = [math.log(b / s) for b, s in zip(base_seconds, seconds)]
    mean = statistics.fmean(logs)
    half = t95(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
    return {"value": math.exp(mean), "low": math.exp(mean - half), "high": math.exp(mean + half)}


CLEARLY_FASTER_MARGIN = 0.10  # the harness's rule (kClearlyFasterMargin in joulecut/timing.h)


def libtorch_baseline(report, batch):
    times = {label: e["batches"][batch]["min_ms"] for label, e in report["engines"].items()
             if label.startswith("TorchScript fp32")}
    fastest = min(times, key=times.get)
    if PREFERRED in times and times[fastest] >= (1 - CLEARLY_FASTER_MARGIN) * times[PREFERRED]:
        return PREFERRED
    return fastest


def fastest_fp32(report, batch):
    times = {label: e["batches"][batch]["min_ms"] for label, e in report["engines"].items()
             if label.startswith("TorchScript fp32") or label in OTHER_FP32}
    return min(times, key=times.get)


def speedup(report, engine, base, batch):
    e = report["engines"]
    if engine not in e or base not in e:
        return None
    return paired(e[base]["batches"][batch]["seconds"], e[engine]["batches"][batch]["seconds"])


def ci_text(s):
    return "-" if s is None else f"{s['value']:.2f}x ({s['low']:.2f}-{s['high']:.2f})"


def fidelity_text(f):
    text = f"cosine {f['cosine']:.4f}"
    if "agreement" in f:
        text += f", agreement {100 * f['agreement']:.1f}%"
    return text


def model_table(report):
    base = {b: libtorch_baseline(report, b) for b in BATCHES}
    fastest = {b: fastest_fp32(report, b) for b in BATCHES}
    lines = [f"### {report['model']}", "",
             "| engine | form | fidelity to fp32 (held out) | ms b1 | ms b16 | vs LibTorch fp32 b1 | vs LibTorch fp32 b16 "
             "| vs fastest fp32 b1 / b16 |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for label, e in report["engines"].items():
        b1, b16 = e["batches"]["1"], e["batches"]["16"]
        versus = " / ".join(f"{speedup(report, label, fastest[b], b)['value']:.2f}x" for b in BATCHES)
        lines.append(f"| {label} | {e['form']} | {fidelity_text(e['fidelity'])} | {b1['median_ms']:.2f} | "
                     f"{b16['median_ms']:.1f} | {ci_text(speedup(report, label, base['1'], '1'))} | "
                     f"{ci_text(speedup(report, label, base['16'], '16'))} | {versus} |")
    lines += ["", f"LibTorch fp32 baseline: {base['1']} at batch 1, {base['16']} at batch 16. "
                  f"Fastest fp32: {fastest['1']} at batch 1, {fastest['16']} at batch 16."]
    lines += ["", "Targets (the peer issue), each with its figure:", ""] + targets(report, fastest)
    for family, why in report["failures"].items():
        lines.append(f"**{family} failed**: {why}")
    m = report["manifest"]
    lines += ["", f"Manifest: {m['date']}, {m['cpu']}, {m['threads']} threads, {m['rounds']} rounds interleaved of "
                  f"{m['window_seconds']} s per engine, batches {m['batches']}, {m['test_samples']} held-out test samples "
                  f"({m['inputs']}), fidelity to {report.get('reference', 'TorchScript fp32')}, peers' int8 calibrated "
                  f"on {m['calibration_samples']} training samples; "
                  + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", ""]
    return lines


def targets(report, fastest):
    """The peer issue's targets for one model, each with its figure, at batch 1 and 16."""
    lines = []
    for batch in BATCHES:
        checks = [("joulecut int8 / OpenVINO int8 (NNCF) speed", speedup(report, "joulecut int8", "OpenVINO int8 (NNCF)", batch), 1.0),
                  ("joulecut bf16 / OpenVINO bf16 speed", speedup(report, "joulecut bf16", "OpenVINO bf16", batch), 1.0),
                  (f"joulecut int8 / fastest fp32 ({fastest[batch]})", speedup(report, "joulecut int8", fastest[batch], batch), 2.0)]
        for name, s, target in checks:
            value = None if s is None else s["value"]
            figure = "n/a" if value is None else f"{value:.2f}x"
            lines.append(f"- batch {batch}: {name}: {figure} (target >= {target:.1f}x): {verdict('' if value is None else value, target, 'min')}")
    e = report["engines"]
    if "joulecut int8" in e and "OpenVINO int8 (NNCF)" in e:
        ours, theirs = e["joulecut int8"]["fidelity"]["cosine"], e["OpenVINO int8 (NNCF)"]["fidelity"]["cosine"]
        lines.append(f"- fidelity: joulecut int8 cosine {ours:.4f}, OpenVINO int8 {theirs:.4f} "
                     f"({'equal or better' if ours >= theirs - 1e-4 else 'worse'})")
    return lines


def main():
    directory, models = sys.argv[1], sys.argv[2:]
    lines = ["# joulecut beside the CPU runtimes a user could pick (scripts/bench-peers)", "",
             __doc__.split("\n\n", 1)[1].replace("\n", " "), "",
             "Energy is not in this table: the peers have no joulecut meter, and on this VM energy would be "
             "modeled from these same times.", ""]
    for model in models:
        path = os.path.join(directory, f"{model}-peers.json")
        if not os.path.exists(path):
            lines += [f"### {model}", "", f"**not measured**: {path} is missing (see the bench's output).", ""]
            continue
        with open(path) as f:
            lines += model_table(json.load(f))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
