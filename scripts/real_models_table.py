"""The real-model suite's table (scripts/bench-real-models): each model x pass family, whether it
works (or why not, in one line), fidelity to the model's own fp32 on held-out inputs, speed-up and
modeled energy ratio at batch 1 and 16, read from the JSON compress compare wrote (bench_json.py;
nothing recomputed), then the targets of the real-models issue with their verdicts and the manifest.

  python real_models_table.py OUT MODEL...
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_json as bj  # noqa: E402

FAMILY_LABEL = {"int8": "int8", "bf16": "bf16", "prune": "pruned (heads / channels)", "distill": "pruned + distilled"}
# Targets: (model, family, figure, target, direction); figure: cosine, agreement, speedup16.
TARGETS = [
    ("minilm-eager", "int8", "cosine", 0.995, "min"), ("minilm-eager", "int8", "speedup16", 2.5, "min"),
    ("efficientnet-lite0", "int8", "agreement", 97.0, "min"), ("mobilenet-v2", "int8", "agreement", 97.0, "min"),
    ("minilm-eager", "distill", "cosine", 0.97, "min"), ("minilm-eager", "distill", "speedup16", 1.6, "min"),
    ("efficientnet-lite0", "distill", "agreement", 90.0, "min"), ("efficientnet-lite0", "distill", "speedup16", 1.3, "min"),
]


def figure(doc, path, label, name):
    try:
        if name == "speedup16":
            return bj.ratio(doc, path, label, 16, "speedup", None)
        if name.startswith("speedup") or name.startswith("energy"):
            kind, batch = ("speedup", int(name[7:])) if name.startswith("speedup") else ("energy", int(name[6:]))
            return bj.ratio(doc, path, label, batch, kind, None)
        return bj.model_field(bj.find_model(doc, path, label), path, name)
    except (bj.Missing, bj.Failure):
        return None


def show(value, digits):
    return "-" if value is None else f"{value:.{digits}f}"


def times(value):  # a ratio, or "-" where that batch was not measured (the CI slice: batch 16 only)
    return "-" if value is None else f"{value:.2f}x"


def main(out, models):
    status = {}
    for line in open(os.path.join(out, "status.tsv"), encoding="utf-8"):
        model, family, text = line.rstrip("\n").split("\t", 2)
        status[(model, family)] = text
    manifest = json.load(open(os.path.join(out, "manifest.json"), encoding="utf-8"))
    print("| model | pass | result | cosine to fp32 | top-1 agreement | speed-up b1 / b16 | energy ratio b16 (modeled) |")
    print("|---|---|---|---:|---:|---:|---:|")
    figures = {}
    for model in models:
        path = os.path.join(out, model + ".json")
        doc = bj.report(path) if os.path.exists(path) else None
        for family in ["int8", "bf16", "prune", "distill"]:
            if (model, family) not in status:
                continue
            label = f"{model}-{family}"
            get = (lambda name: figure(doc, path, label, name)) if doc else (lambda name: None)
            row = {n: get(n) for n in ["cosine", "agreement", "speedup1", "speedup16", "energy16"]}
            figures[(model, family)] = row
            result = status[(model, family)].replace("|", "/")
            print(f"| {model} | {FAMILY_LABEL[family]} | {result} | {show(row['cosine'], 4)} | "
                  f"{show(row['agreement'], 1)}{'%' if row['agreement'] is not None else ''} | "
                  f"{times(row['speedup1'])} / {times(row['speedup16'])} | {times(row['energy16'])} |")
    print()
    print("Targets (the real-models issue), each against the model's own frozen fp32, measured side by side:")
    print()
    for model, family, name, target, direction in TARGETS:
        if model not in models:
            continue
        value = figures.get((model, family), {}).get(name)
        shown = "n/a" if value is None else (f"{value:.4f}" if name == "cosine" else f"{value:.2f}")
        print(f"- {model} {family} {name}: {shown} (target {'>=' if direction == 'min' else '<='} {target}): "
              f"{bj.verdict('' if value is None else value, target, direction)}")
    print()
    print("Manifest: seed", manifest["seed"], "; packages:",
          ", ".join(f"{k} {v}" for k, v in manifest["packages"].items() if v))
    for m in manifest["models"]:
        print(f"- {m['name']}: {m['source']}; {m['inputs']}; train {m['train']}, held-out test {m['test']}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
