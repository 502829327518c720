#!/usr/bin/env python3
"""The peer bench's table: peers_table.py DIR MODEL... reads DIR/MODEL-peers.json (scripts/peers.py)
and prints one Markdown table per model with its manifest. Each speed-up is against TorchScript
frozen fp32 timed in the same rounds (median of per-round ratios, 95% interval); "vs fastest fp32"
divides by the fastest fp32 engine of any runtime at that batch instead."""
import json
import os
import sys

FP32 = ("TorchScript fp32 (frozen)", "TorchScript fp32 (frozen + optimize_for_inference)", "ONNX Runtime fp32",
        "OpenVINO f32")


def speedup_text(s):
    return f"{s['median']:.2f}x ({s['low']:.2f}-{s['high']:.2f})"


def fidelity_text(f):
    text = f"cosine {f['cosine']:.4f}"
    if "agreement" in f:
        text += f", agreement {100 * f['agreement']:.1f}%"
    return text


def fastest_fp32(report, batch):
    times = {label: e["batches"][batch]["median_ms"] for label, e in report["engines"].items() if label in FP32}
    label = min(times, key=times.get)
    return label, times[label]


def model_table(report):
    lines = [f"### {report['model']}", "",
             "| engine | form | fidelity to fp32 (held out) | ms b1 | ms b16 | speed-up b1 | speed-up b16 | vs fastest fp32 b1 / b16 |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    fastest = {b: fastest_fp32(report, b) for b in ("1", "16")}
    for label, e in report["engines"].items():
        b1, b16 = e["batches"]["1"], e["batches"]["16"]
        versus = " / ".join(f"{fastest[b][1] / e['batches'][b]['median_ms']:.2f}x" for b in ("1", "16"))
        lines.append(f"| {label} | {e['form']} | {fidelity_text(e['fidelity'])} | {b1['median_ms']:.2f} | "
                     f"{b16['median_ms']:.1f} | {speedup_text(b1['speedup'])} | {speedup_text(b16['speedup'])} | {versus} |")
    lines.append("")
    lines.append(f"Fastest fp32: {fastest['1'][0]} at batch 1, {fastest['16'][0]} at batch 16.")
    lines.append("")
    lines.append("Targets (the peer issue), each with its figure:")
    lines.append("")
    lines += targets(report)
    for family, why in report["failures"].items():
        lines.append(f"**{family} failed**: {why}")
    m = report["manifest"]
    lines.append("")
    lines.append(f"Manifest: {m['date']}, {m['cpu']}, {m['threads']} threads, {m['rounds']} rounds interleaved of "
                 f"{m['window_seconds']} s per engine, batches {m['batches']}, {m['test_samples']} held-out test samples "
                 f"({m['inputs']}), peers' int8 calibrated on {m['calibration_samples']} training samples; "
                 + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".")
    lines.append("")
    return lines


def ratio(report, engine, other, batch):
    e = report["engines"]
    if engine not in e or other not in e:
        return None
    return e[other]["batches"][batch]["median_ms"] / e[engine]["batches"][batch]["median_ms"]


def verdict(value, target):
    return "n/a" if value is None else ("PASS" if value >= target else "MISS")


def targets(report):
    """The peer issue's targets for one model, each with its figure, at batch 1 and 16."""
    lines = []
    e = report["engines"]
    for batch in ("1", "16"):
        fastest_label, fastest_ms = fastest_fp32(report, batch)
        checks = [("joulecut int8 / OpenVINO int8 (NNCF) speed", ratio(report, "joulecut int8", "OpenVINO int8 (NNCF)", batch), 1.0),
                  ("joulecut bf16 / OpenVINO bf16 speed", ratio(report, "joulecut bf16", "OpenVINO bf16", batch), 1.0),
                  (f"joulecut int8 / fastest fp32 ({fastest_label})",
                   fastest_ms / e["joulecut int8"]["batches"][batch]["median_ms"] if "joulecut int8" in e else None, 2.0)]
        for name, value, target in checks:
            figure = "n/a" if value is None else f"{value:.2f}x"
            lines.append(f"- batch {batch}: {name}: {figure} (target >= {target:.1f}x): {verdict(value, target)}")
    if "joulecut int8" in e and "OpenVINO int8 (NNCF)" in e:
        ours, theirs = e["joulecut int8"]["fidelity"]["cosine"], e["OpenVINO int8 (NNCF)"]["fidelity"]["cosine"]
        lines.append(f"- fidelity: joulecut int8 cosine {ours:.4f}, OpenVINO int8 {theirs:.4f} "
                     f"({'equal or better' if ours >= theirs - 1e-4 else 'worse'})")
    return lines


def main():
    directory, models = sys.argv[1], sys.argv[2:]
    lines = ["# joulecut beside the CPU runtimes a user could pick (scripts/bench-peers)", "",
             "Speed-ups are against TorchScript frozen fp32, the harness's baseline, timed in the same "
             "rounds; the last column divides by the fastest fp32 of any runtime instead. Energy is not "
             "in this table: the peers have no joulecut meter, and on this VM energy would be modeled "
             "from these same times.", ""]
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
