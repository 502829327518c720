#!/usr/bin/python3
"""Figures for the bench scripts, read from the JSON that compress writes (standard library only).

The bench scripts never read a console table: `compress compare|measure ... --json FILE`
writes the run's report (measure/src/harness/report.cpp, write_json), and every figure and
ratio comes from it, unrounded. Where the JSON carries a ratio (speedup_vs_baseline) it is
read, not recomputed. Numbers print at full precision unless --digits N is given; `fmt`
rounds one for display, `verdict` compares the unrounded one with its target.

Report JSON (compare / measure --json FILE):
  get FILE MODEL BATCH FIELD        a run's figure; FIELD: p50_ms p99_ms mean_ms mean_ms_ci95
                                    throughput speedup energy_measured_mj energy_net_mj
                                    energy_time_power_mj energy_ops_mj energy_provenance windows wide
  model FILE MODEL FIELD            a model's figure; FIELD: accuracy accuracy_low accuracy_high (%)
                                    file_bytes file_kib parameters macs cosine agreement (%) snr_db
  ratio FILE MODEL BATCH speedup|energy [--against OTHER]
                                    baseline (the file's first model, or OTHER) / MODEL: > 1 is better.
                                    speedup: p50 latency (read from speedup_vs_baseline against the
                                    baseline); energy: read from energy_ratio_vs_baseline (the
                                    report's rule: meters on both sides, else time x power on both)
  file-ratio FILE MODEL [--against OTHER]
                                    MODEL's file bytes / the baseline's (or OTHER's): < 1 is smaller
  drop FILE MODEL [--against OTHER] accuracy points lost: baseline's (or OTHER's) accuracy - MODEL's
Any JSON (compress eval --json, compress info --json):
  value FILE KEY[.KEY...] [--scale K]   one number or string by its path, e.g. accuracy,
                                    provenance.test_accuracy; list items by index (layers.0.name)
Arithmetic on figures already read:
  sub A B | mean V... | elapsed START_EPOCH_SECONDS | fmt VALUE [DIGITS]
  verdict VALUE TARGET min|max      PASS when VALUE >= TARGET (min) or <= TARGET (max), else MISS;
                                    n/a when VALUE is empty or not a number
  selftest                          checks this helper on a sample in report.cpp's schema

Options for the figure commands: --digits N (round), --missing TEXT (print TEXT, exit 0, and a
warning on stderr when the model or run is not in the file, instead of failing).
Errors: one line on stderr naming the file and what is missing; exit status 1 (2: usage).
"""
import json
import math
import os
import sys
import time

PROG = "bench_json.py"


class Missing(Exception):
    """A model, run or figure not in the file (--missing may turn it into a placeholder)."""


class Failure(Exception):
    """Anything else: an unreadable file, a bad argument."""


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise Failure(f"{path}: no such file")
    except (OSError, UnicodeDecodeError) as e:
        raise Failure(f"{path}: cannot read: {e}")
    except json.JSONDecodeError as e:
        raise Failure(f"{path}: not JSON ({e.msg} at line {e.lineno})")


def report(path):
    doc = load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list) or not isinstance(doc.get("runs"), list):
        raise Failure(f"{path}: not a compare/measure report (no 'models' and 'runs'; write it with --json FILE)")
    return doc


def find_model(doc, path, label):
    for m in doc["models"]:
        if m.get("label") == label:
            return m
    labels = ", ".join(str(m.get("label")) for m in doc["models"]) or "none"
    raise Missing(f"{path}: no model '{label}' (models: {labels})")


def baseline_label(doc, path):
    if not doc["models"]:
        raise Missing(f"{path}: no models, so no baseline")
    return doc["models"][0]["label"]


def find_run(doc, path, label, batch):
    try:
        batch = int(batch)
    except ValueError:
        raise Failure(f"batch '{batch}' is not a whole number")
    runs = [r for r in doc["runs"] if r.get("model") == label]
    if not runs:
        find_model(doc, path, label)  # names the models when the label is wrong
        raise Missing(f"{path}: model '{label}' has no runs")
    for r in runs:
        if r.get("batch") == batch:
            return r
    batches = ", ".join(str(r.get("batch")) for r in runs)
    raise Missing(f"{path}: no run of '{label}' at batch {batch} (batches: {batches})")


def number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Missing(f"{what} is not a number ({json.dumps(value)})")
    return value


def positive_ratio(value, what):
    # The C++ writes 0 for a ratio it could not form (no baseline run at that batch, no latency).
    if number(value, what) <= 0:
        raise Missing(f"{what} is unknown (0 in the file: no baseline run at that batch?)")
    return value


def key(obj, name, what):
    if not isinstance(obj, dict) or name not in obj:
        raise Missing(f"{what} not in the file")
    return obj[name]


def energy_entries(run):
    return run.get("energy") if isinstance(run.get("energy"), list) else []


def measured_energy(run, basis="gross"):
    for e in energy_entries(run):
        if e.get("provenance") in ("measured", "sampled") and e.get("basis", "gross") == basis:
            return e
    return None


def modeled_energy(run, prefix):
    for e in energy_entries(run):
        if e.get("provenance") == "modeled" and str(e.get("model", "")).startswith(prefix):
            return e
    return None


# The modeled entries' "model" strings: measure/src/core/energy_model.cpp.
TIME_POWER = "time x power"
OPS = "op count x energy per op"


def joules(entry, what):
    if entry is None:
        raise Missing(f"{what} not in the file")
    return number(key(key(entry, "joules_per_inference", what), "mean", what), what)


def run_field(run, path, field):
    where = f"{path}: '{run.get('model')}' at batch {run.get('batch')}:"
    ms = lambda name: 1e3 * number(key(run, name, f"{where} {name}"), f"{where} {name}")
    latency = lambda name: 1e3 * number(key(key(run, "latency_seconds_per_batch", f"{where} latency_seconds_per_batch"),
                                            name, f"{where} latency {name}"), f"{where} latency {name}")
    fields = {
        "p50_ms": lambda: ms("p50_seconds"),
        "p99_ms": lambda: ms("p99_seconds"),
        "mean_ms": lambda: latency("mean"),
        "mean_ms_ci95": lambda: latency("ci95_half_width"),
        "throughput": lambda: number(key(key(run, "throughput_per_second", f"{where} throughput"), "mean",
                                         f"{where} throughput"), f"{where} throughput"),
        "speedup": lambda: positive_ratio(key(run, "speedup_vs_baseline", f"{where} speedup_vs_baseline"),
                                          f"{where} speedup_vs_baseline"),
        "energy_measured_mj": lambda: 1e3 * joules(measured_energy(run), f"{where} measured energy (no meter ran)"),
        "energy_net_mj": lambda: 1e3 * joules(measured_energy(run, "net of idle"), f"{where} net energy (no --idle)"),
        "energy_time_power_mj": lambda: 1e3 * joules(modeled_energy(run, TIME_POWER), f"{where} time x power energy"),
        "energy_ops_mj": lambda: 1e3 * joules(modeled_energy(run, OPS), f"{where} ops energy"),
        "energy_provenance": lambda: (measured_energy(run) or {}).get("provenance", "modeled"),
        "windows": lambda: number(key(run, "windows", f"{where} windows"), f"{where} windows"),
        "wide": lambda: "yes" if key(key(run, "quality", f"{where} quality"), "wide_interval", f"{where} wide_interval")
        else "no",
    }
    if field not in fields:
        raise Failure(f"unknown run field '{field}' (choose: {' '.join(fields)})")
    return fields[field]()


def model_field(model, path, field):
    where = f"{path}: '{model.get('label')}':"

    def accuracy(name):
        acc = model.get("accuracy")
        if not isinstance(acc, dict):
            raise Missing(f"{where} no accuracy (not evaluated)")
        if acc.get("value") is None:
            raise Missing(f"{where} no accuracy ({acc.get('data') or 'not evaluated'})")
        if name == "value":
            return 100 * number(acc["value"], f"{where} accuracy")
        ci = key(acc, "ci95", f"{where} accuracy ci95")
        return 100 * number(ci[0 if name == "low" else 1], f"{where} accuracy ci95")

    def fidelity(name):
        f = model.get("fidelity")
        if not isinstance(f, dict):
            raise Missing(f"{where} no fidelity (the baseline, or data with labels: --metric cosine asks for it)")
        if name == "cosine":
            return number(key(key(f, "cosine", f"{where} cosine"), "mean", f"{where} cosine"), f"{where} cosine")
        if name == "agreement":
            return 100 * number(key(key(f, "agreement", f"{where} agreement"), "value", f"{where} agreement"),
                                f"{where} agreement")
        snr = key(f, "snr_db", f"{where} snr_db")
        return math.inf if snr is None else number(snr, f"{where} snr_db")  # null: identical outputs

    integer = lambda name: number(key(model, name, f"{where} {name}"), f"{where} {name}")
    fields = {
        "accuracy": lambda: accuracy("value"),
        "accuracy_low": lambda: accuracy("low"),
        "accuracy_high": lambda: accuracy("high"),
        "file_bytes": lambda: integer("file_bytes"),
        "file_kib": lambda: integer("file_bytes") / 1024,
        "parameters": lambda: integer("parameters"),
        "macs": lambda: integer("macs_per_inference"),
        "cosine": lambda: fidelity("cosine"),
        "agreement": lambda: fidelity("agreement"),
        "snr_db": lambda: fidelity("snr_db"),
    }
    if field not in fields:
        raise Failure(f"unknown model field '{field}' (choose: {' '.join(fields)})")
    return fields[field]()


def energy_ratio(doc, path, label, batch, against):
    # The report computes it once, by its own rule (meters on both sides, else the time x power
    # model on both), and writes it with its provenance: read, never recomputed here.
    if against is not None and against != baseline_label(doc, path):
        raise Failure("an energy ratio is read against the report's baseline only: compare MODEL with OTHER first")
    written = key(find_run(doc, path, label, batch), "energy_ratio_vs_baseline", f"{path}: '{label}' at batch {batch}")
    return positive_ratio(written.get("value") if isinstance(written, dict) else written,
                          f"{path}: '{label}' at batch {batch}: energy_ratio_vs_baseline")


def ratio(doc, path, label, batch, kind, against):
    if kind == "energy":
        return energy_ratio(doc, path, label, batch, against)
    if kind != "speedup":
        raise Failure(f"unknown ratio '{kind}' (choose: speedup energy; file-ratio for file sizes)")
    run = find_run(doc, path, label, batch)
    if against is None or against == baseline_label(doc, path):
        return run_field(run, path, "speedup")
    other = find_run(doc, path, against, batch)
    where = f"{path}: batch {batch}: p50_seconds"
    return positive_ratio(number(other.get("p50_seconds"), f"{where} of '{against}'") /
                          number(run.get("p50_seconds"), f"{where} of '{label}'"), f"{where} ratio")


def file_ratio(doc, path, label, against):
    model = find_model(doc, path, label)
    other = find_model(doc, path, against or baseline_label(doc, path))
    base = model_field(other, path, "file_bytes")
    if base <= 0:
        raise Missing(f"{path}: '{other['label']}' has no file size")
    return model_field(model, path, "file_bytes") / base


def drop(doc, path, label, against):
    other = find_model(doc, path, against or baseline_label(doc, path))
    return model_field(other, path, "accuracy") - model_field(find_model(doc, path, label), path, "accuracy")


def value_at(path, dotted, scale):
    obj = load(path)
    walked = []
    for part in dotted.split("."):
        walked.append(part)
        if isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            raise Missing(f"{path}: no '{'.'.join(walked)}'")
    if isinstance(obj, (dict, list)):
        raise Failure(f"{path}: '{dotted}' is not a single value")
    if obj is None:
        raise Missing(f"{path}: '{dotted}' is null")
    if scale is not None:
        return number(obj, f"{path}: '{dotted}'") * scale
    return obj


def parse_number(text, what):
    try:
        v = float(text)
    except ValueError:
        raise Failure(f"{what} '{text}' is not a number")
    if not math.isfinite(v):
        raise Failure(f"{what} '{text}' is not a finite number")
    return v


def show(value, digits=None):
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if digits is not None:
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def fmt(text, digits):
    try:
        v = float(text)
    except ValueError:
        return text  # n/a, failed: shown as they are
    return show(v, digits) if math.isfinite(v) else text


def verdict(value, target, direction):
    if direction not in ("min", "max"):
        raise Failure(f"verdict direction '{direction}': choose min (value >= target) or max (value <= target)")
    t = parse_number(target, "target")
    try:
        v = float(value)
    except ValueError:
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    return "PASS" if (v >= t if direction == "min" else v <= t) else "MISS"


USAGE = {
    "get": "get FILE MODEL BATCH FIELD", "model": "model FILE MODEL FIELD",
    "ratio": "ratio FILE MODEL BATCH speedup|energy [--against OTHER]",
    "file-ratio": "file-ratio FILE MODEL [--against OTHER]", "drop": "drop FILE MODEL [--against OTHER]",
    "value": "value FILE KEY[.KEY...] [--scale K]", "sub": "sub A B", "mean": "mean V...",
    "elapsed": "elapsed START_EPOCH_SECONDS", "fmt": "fmt VALUE [DIGITS]",
    "verdict": "verdict VALUE TARGET min|max", "selftest": "selftest",
}


class Usage(Exception):
    pass


def split_options(args):
    """Takes --digits, --missing, --against and --scale (anywhere); returns (positional, options)."""
    positional, options = [], {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--digits", "--missing", "--against", "--scale"):
            if i + 1 >= len(args):
                raise Usage(f"{a} needs a value")
            options[a[2:]] = args[i + 1]
            i += 2
        else:
            positional.append(a)
            i += 1
    return positional, options


def run(argv):
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    command, args = argv[0], argv[1:]
    if command not in USAGE:
        raise Usage(f"unknown command '{command}' (choose: {' '.join(USAGE)}; --help)")
    if command == "verdict":  # a value may be negative: no option parsing here
        if len(args) != 3:
            raise Usage(f"usage: {PROG} {USAGE[command]}")
        print(verdict(*args))
        return 0
    if command == "selftest":
        return selftest()
    pos, opt = split_options(args)
    digits = None
    if "digits" in opt:
        if not opt["digits"].isdigit():
            raise Usage(f"--digits '{opt['digits']}': a whole number")
        digits = int(opt["digits"])
    want = {"get": 4, "model": 3, "ratio": 4, "file-ratio": 2, "drop": 2, "value": 2, "sub": 2, "elapsed": 1}
    if command in want and len(pos) != want[command] or command == "mean" and not pos or \
            command == "fmt" and len(pos) not in (1, 2):
        raise Usage(f"usage: {PROG} {USAGE[command]}")
    try:
        if command == "get":
            doc = report(pos[0])
            result = run_field(find_run(doc, pos[0], pos[1], pos[2]), pos[0], pos[3])
        elif command == "model":
            doc = report(pos[0])
            result = model_field(find_model(doc, pos[0], pos[1]), pos[0], pos[2])
        elif command == "ratio":
            result = ratio(report(pos[0]), pos[0], pos[1], pos[2], pos[3], opt.get("against"))
        elif command == "file-ratio":
            result = file_ratio(report(pos[0]), pos[0], pos[1], opt.get("against"))
        elif command == "drop":
            result = drop(report(pos[0]), pos[0], pos[1], opt.get("against"))
        elif command == "value":
            scale = parse_number(opt["scale"], "--scale") if "scale" in opt else None
            result = value_at(pos[0], pos[1], scale)
        elif command == "sub":
            result = parse_number(pos[0], "A") - parse_number(pos[1], "B")
        elif command == "mean":
            result = sum(parse_number(v, "value") for v in pos) / len(pos)
        elif command == "elapsed":
            result = time.time() - parse_number(pos[0], "start")
        else:  # fmt
            print(fmt(pos[0], int(pos[1]) if len(pos) == 2 and pos[1].isdigit() else 2))
            return 0
    except Missing as e:
        if "missing" not in opt:
            raise Failure(str(e))
        print(f"{PROG}: warning: {e}", file=sys.stderr)
        print(opt["missing"])
        return 0
    print(show(result, digits))
    return 0


def main(argv):
    try:
        return run(argv)
    except Usage as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except Failure as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `--help | head`
        return 0


# ---- self-test ---------------------------------------------------------------------------------
# A report as write_json (measure/src/harness/report.cpp) writes it: three models, the third
# without a file of its own batch-1 run; the second with a meter, the rest modeled; fidelity on
# the non-baselines. Figures chosen so that rounding before dividing would change the ratios.
SAMPLE = {
    "title": "compress compare (ratios against lenet5)",
    "models": [
        {"label": "lenet5", "path": "models/trained/lenet5.pt", "file_bytes": 250000, "parameters": 61706,
         "macs_per_inference": 416520,
         "accuracy": {"value": 0.91394, "ci95": [0.9083, 0.9192], "method": "Wilson score interval",
                      "correct": 9139, "samples": 10000, "data": "fashion-mnist test (10000 images)"}},
        {"label": "lenet5-onednn", "path": "out/lenet5-onednn.pt", "file_bytes": 70049, "parameters": 61706,
         "macs_per_inference": 416520,
         "accuracy": {"value": 0.91456, "ci95": [0.9089, 0.9198], "method": "Wilson score interval",
                      "correct": 9145, "samples": 10000, "data": "fashion-mnist test (10000 images)"},
         "fidelity": {"against": "lenet5", "data": "the first 512 test images", "cosine": {"mean": 0.99987654,
                      "ci95_half_width": 0.00001}, "max_abs_error": 0.031, "snr_db": 38.2,
                      "agreement": {"value": 0.994, "ci95": [0.985, 0.998]}}},
        {"label": "lenet5-torch", "path": "out/lenet5-torch.pt", "file_bytes": 80000, "parameters": 61706,
         "macs_per_inference": 416520, "accuracy": {"value": None, "data": "n/a (no labels)"},
         "fidelity": {"against": "lenet5", "data": "the first 512 test images",
                      "cosine": {"mean": 1.0, "ci95_half_width": 0.0}, "max_abs_error": 0.0, "snr_db": None}},
    ],
    "runs": [],
    "manifest": {"cpu": "sample", "threads": "2"},
}


def _run(label, batch, p50, time_power_j, measured_j=None, speedup=None, energy_ratio=None):
    ci = lambda mean: {"mean": mean, "ci95_half_width": mean / 50, "stddev": mean / 20, "n": 10}
    energy = []
    if measured_j is not None:
        energy.append({"provenance": "measured", "meter": "rapl", "domains": ["package-0"],
                       "joules_per_inference": ci(measured_j), "counter_wraps_corrected": 0, "basis": "gross"})
    energy.append({"provenance": "modeled", "model": TIME_POWER, "detail": "8 W x CPU share",
                   "joules_per_inference": ci(time_power_j)})
    energy.append({"provenance": "modeled", "model": OPS, "detail": "Horowitz 2014",
                   "joules_per_inference": ci(time_power_j / 10)})
    return {"model": label, "device": "cpu", "batch": batch, "windows": 10, "iterations_per_window": 100,
            "window_seconds": 0.2, "latency_seconds_per_batch": ci(p50 * 1.01), "p50_seconds": p50,
            "p99_seconds": p50 * 1.3, "throughput_per_second": ci(batch / p50),
            "speedup_vs_baseline": speedup if speedup is not None else 0.0,
            "energy_ratio_vs_baseline": {"value": energy_ratio or 0.0, "provenance": "measured" if measured_j else "modeled"},
            "energy": energy,
            "quality": {"rounds": 1, "relative_half_width": 0.02, "wide_limit": 0.1, "wide_interval": False,
                        "other_load": 0.01, "steal": 0.0}}


SAMPLE["runs"] = [
    _run("lenet5", 64, 0.0018, 0.0004, measured_j=0.0005, speedup=1.0, energy_ratio=1.0),
    _run("lenet5-onednn", 64, 0.0018 / 2.004, 0.00015, measured_j=0.0002, speedup=2.004, energy_ratio=2.5),
    _run("lenet5-torch", 64, 0.0018 / 1.336, 0.00035, speedup=1.336, energy_ratio=0.0004 / 0.00035),
    _run("lenet5", 1, 0.0001, 0.00002, measured_j=0.00003, speedup=1.0),
    _run("lenet5-onednn", 1, 0.0001 / 3.3049, 0.00001, measured_j=0.00001, speedup=3.3049),
]


def selftest():
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "compare.json")
        with open(path, "w") as f:
            json.dump(SAMPLE, f, indent=2)
        eval_path = os.path.join(tmp, "eval.json")
        with open(eval_path, "w") as f:
            json.dump({"model": "lenet5.pt", "accuracy": 0.9139, "accuracy_ci95": [0.908, 0.919],
                       "provenance": {"test_accuracy": 0.91275}}, f)
        cases = [  # (arguments, expected stdout, expected exit status)
            (["get", path, "lenet5-onednn", "64", "speedup", "--digits", "2"], "2.00", 0),
            (["get", path, "lenet5-onednn", "64", "p50_ms", "--digits", "4"], "0.8982", 0),
            (["get", path, "lenet5-onednn", "64", "energy_measured_mj", "--digits", "1"], "0.2", 0),
            (["get", path, "lenet5-torch", "64", "energy_provenance"], "modeled", 0),
            (["get", path, "lenet5-onednn", "64", "wide"], "no", 0),
            (["ratio", path, "lenet5-onednn", "64", "speedup"], "2.004", 0),  # read, not recomputed
            # 2.004 / 1.336 = 1.5; from the table's rounded text (2.00x / 1.34x) it was 1.4925, a MISS of >= 1.5
            (["ratio", path, "lenet5-onednn", "64", "speedup", "--against", "lenet5-torch", "--digits", "4"],
             "1.5000", 0),
            (["ratio", path, "lenet5-onednn", "64", "energy", "--digits", "2"], "2.50", 0),  # read, not recomputed
            (["ratio", path, "lenet5-torch", "64", "energy", "--digits", "3"], "1.143", 0),
            (["file-ratio", path, "lenet5-onednn", "--digits", "4"], "0.2802", 0),
            (["drop", path, "lenet5-onednn", "--digits", "3"], "-0.062", 0),
            (["model", path, "lenet5", "accuracy", "--digits", "3"], "91.394", 0),
            (["model", path, "lenet5", "file_kib", "--digits", "1"], "244.1", 0),
            (["model", path, "lenet5-onednn", "cosine", "--digits", "4"], "0.9999", 0),
            (["model", path, "lenet5-torch", "snr_db"], "inf", 0),
            (["value", eval_path, "accuracy", "--scale", "100", "--digits", "2"], "91.39", 0),
            (["value", eval_path, "provenance.test_accuracy", "--scale", "100", "--digits", "3"], "91.275", 0),
            (["sub", "91.39", "91.275", "--digits", "3"], "0.115", 0),
            (["mean", "1", "2", "4.5", "--digits", "2"], "2.50", 0),
            (["fmt", "1.23456", "3"], "1.235", 0),
            (["fmt", "n/a"], "n/a", 0),
            (["verdict", "1.4999", "1.5", "min"], "MISS", 0),
            (["verdict", "1.5", "1.5", "min"], "PASS", 0),
            (["verdict", "-0.06", "0.5", "max"], "PASS", 0),
            (["verdict", "", "2", "min"], "n/a", 0),
            (["verdict", "failed", "2", "min"], "n/a", 0),
            (["get", path, "lenet5-torch", "1", "speedup", "--missing", "failed"], "failed", 0),
            # errors: one line, non-zero
            (["get", path, "lenet5-torch", "1", "speedup"], "", 1),
            (["get", path, "resnet8", "64", "speedup"], "", 1),
            (["get", path, "lenet5", "64", "latency"], "", 1),
            (["model", path, "lenet5-torch", "accuracy"], "", 1),
            (["model", path, "lenet5", "cosine"], "", 1),
            (["get", os.path.join(tmp, "absent.json"), "lenet5", "64", "speedup"], "", 1),
            (["model", eval_path, "lenet5", "accuracy"], "", 1),
            (["value", eval_path, "provenance.seed"], "", 1),
            (["verdict", "1", "2"], "", 2),
            (["nonsense"], "", 2),
        ]
        failures = 0
        for args, expected, status in cases:
            p = subprocess.run([sys.executable, os.path.abspath(__file__)] + args, capture_output=True, text=True)
            out, err = p.stdout.strip(), p.stderr.strip()
            ok = p.returncode == status and out == expected
            if status != 0:  # one clear line naming the problem
                ok = ok and len(err.splitlines()) == 1 and err.startswith(PROG + ": ")
            if not ok:
                failures += 1
                shown = [a.replace(tmp, "TMP") for a in args]
                print(f"FAIL {' '.join(shown)}: got exit {p.returncode}, stdout {out!r}, stderr {err!r}; "
                      f"expected exit {status}, stdout {expected!r}")
        print(f"{PROG} selftest: {len(cases) - failures} of {len(cases)} passed")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
