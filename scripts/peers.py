#!/usr/bin/env python3
"""The peer bench's measuring half (scripts/bench-peers makes the files): one model's engines in
one process, on the same held-out inputs, the same threads, rounds interleaved.

  peers.py DIR MODEL --ops LIBJOULECUT_OPS [--rounds 7] [--threads 2] [--calibration 96]

DIR holds MODEL.pt (TorchScript fp32), MODEL-int8.pt and MODEL-bf16.pt (made by compress),
MODEL/train.npz (calibration for the other runtimes' int8) and MODEL/test.npz (held out: timing
batches and fidelity). Writes DIR/MODEL-peers.json with each engine's per-call seconds in every
round, so that peers_table.py computes paired ratios against any engine: against LibTorch's best
fp32 (the harness's baseline: the fastest of its deployable forms at that batch) and against the
fastest fp32 of any runtime.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import real_models  # noqa: E402  (the models' eager modules)

BATCHES = (1, 16)


def load_inputs(path):
    data = np.load(path)
    names = [k for k in data.keys() if k != "labels"]
    return names, [data[k] for k in names]


def torch_call(module):  # a TorchScript or eager module as an engine: numpy arrays in, float scores out
    def run(arrays):
        with torch.inference_mode():
            out = module(*[torch.from_numpy(a) for a in arrays])
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.float().numpy()
    return run


def torchscript_forms(path):
    """The file's deployable forms: plain, frozen, frozen + optimize_for_inference (where it works)."""
    forms = {"plain": torch.jit.load(path).eval()}
    makers = {"frozen": torch.jit.freeze,
              "frozen + optimize_for_inference": lambda m: torch.jit.optimize_for_inference(torch.jit.freeze(m))}
    for name, make in makers.items():
        try:
            forms[name] = make(torch.jit.load(path).eval())
        except Exception as e:  # noqa: BLE001 - a form that cannot be made is left out, and said
            print(f"peers: {os.path.basename(path)}: {name} failed: {type(e).__name__}: {str(e)[:120]}")
    return forms


def fastest_form(forms, arrays, probes=5):
    """The form with the lowest minimum over a few calls (a statistic preemption does not move)."""
    best, best_time = None, math.inf
    for name, module in forms.items():
        run = torch_call(module)
        run(arrays)
        times = []
        for _ in range(probes):
            start = time.perf_counter()
            run(arrays)
            times.append(time.perf_counter() - start)
        if min(times) < best_time:
            best, best_time = name, min(times)
    return best


def export_onnx(model_path, names, arrays, onnx_path):
    module = torch.jit.load(model_path).eval()
    sample = tuple(torch.from_numpy(a[:2]) for a in arrays)
    axes = {n: {0: "batch"} for n in names}
    axes["output"] = {0: "batch"}
    torch.onnx.export(module, sample, onnx_path, dynamo=False, opset_version=17, input_names=names,
                      output_names=["output"], dynamic_axes=axes)


def onnxruntime_engines(onnx_path, names, train, threads, calibration, workdir):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1

    def session(path):
        s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        output = s.get_outputs()[0].name
        return lambda arrays: s.run([output], dict(zip(names, arrays)))[0].astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([[a[i:min(i + 8, calibration)] for a in train] for i in range(0, calibration, 8)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else dict(zip(names, batch))

    prepared = os.path.join(workdir, "ort-prepared.onnx")
    try:
        quant_pre_process(onnx_path, prepared)
    except Exception:  # noqa: BLE001 - ORT's optional pre-processing; quantize the export as it is
        prepared = onnx_path
    int8_path = os.path.join(workdir, "ort-int8.onnx")
    quantize_static(prepared, int8_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return {"ONNX Runtime fp32": (session(onnx_path), "CPU EP"),
            "ONNX Runtime int8 (static QDQ, per-channel)": (session(int8_path), "CPU EP, QDQ")}


def openvino_engines(onnx_path, names, train, threads, calibration, transformer):
    import nncf
    import openvino as ov

    core = ov.Core()

    def compiled(model, hint):
        config = {"INFERENCE_NUM_THREADS": threads}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        c = core.compile_model(model, "CPU", config)
        hint_value = c.get_property("INFERENCE_PRECISION_HINT")
        precision = hint_value.get_type_name() if hasattr(hint_value, "get_type_name") else str(hint_value)
        return (lambda arrays: np.asarray(c(dict(zip(names, arrays)))[c.output(0)], dtype=np.float32)), precision

    model = core.read_model(onnx_path)
    items = [dict(zip(names, [a[i:min(i + 8, calibration)] for a in train])) for i in range(0, calibration, 8)]
    # subset_size counts dataset items (batches of 8 here): every item, `calibration` samples.
    quantized = nncf.quantize(core.read_model(onnx_path), nncf.Dataset(items), subset_size=len(items),
                              model_type=nncf.ModelType.TRANSFORMER if transformer else None)
    engines = {}
    for label, m, hint in (("OpenVINO f32", model, "f32"), ("OpenVINO bf16", model, "bf16"),
                           ("OpenVINO int8 (NNCF)", quantized, None)):
        run, precision = compiled(m, hint)
        engines[label] = (run, f"inference precision {precision}")
    return engines


def time_window(run, arrays, seconds):
    """Per-call seconds over one window of at least `seconds` (at least 2 calls)."""
    calls, start = 0, time.perf_counter()
    while True:
        run(arrays)
        calls += 1
        elapsed = time.perf_counter() - start
        if calls >= 2 and elapsed >= seconds:
            return elapsed / calls


def time_engines(engines, test, batch, rounds, window):
    """Rounds interleaved (the engines' order rotated each round); each engine's per-call seconds
    in every round."""
    arrays = [a[:batch] for a in test]
    labels = list(engines)
    for label in labels:  # warm-up
        for _ in range(3):
            engines[label][0](arrays)
    seconds = {label: [] for label in labels}
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        for label in order:
            seconds[label].append(time_window(engines[label][0], arrays, window))
    return {label: {"median_ms": 1e3 * statistics.median(s), "min_ms": 1e3 * min(s), "seconds": s}
            for label, s in seconds.items()}


def fidelity(run, reference, test, classes):
    """Mean per-sample cosine to the reference outputs, and top-1 agreement for class scores."""
    outputs = np.concatenate([run([a[i:i + 16] for a in test]) for i in range(0, len(test[0]), 16)])
    a, b = outputs.reshape(len(outputs), -1).astype(np.float64), reference.reshape(len(reference), -1)
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    result = {"cosine": float(cosine.mean()), "samples": int(len(outputs))}
    if classes:
        result["agreement"] = float((outputs.argmax(1) == reference.argmax(1)).mean())
    return result


def torchscript_engines(directory, model, arrays):
    """LibTorch fp32 in each deployable form (plain first: the fidelity reference), PyTorch eager
    (the authors' module itself, rebuilt from its wheel), then joulecut's files, each in its
    fastest form."""
    engines = {}
    for form, module in torchscript_forms(os.path.join(directory, f"{model}.pt")).items():
        engines[f"TorchScript fp32 ({form})"] = (torch_call(module), form)
    if model in real_models.EAGER:
        engines["PyTorch eager fp32"] = (torch_call(real_models.EAGER[model]()), "eager, inference_mode")
    for kind in ("int8", "bf16"):
        path = os.path.join(directory, f"{model}-{kind}.pt")
        if not os.path.exists(path):
            continue
        forms = torchscript_forms(path)
        form = fastest_form(forms, arrays)
        engines[f"joulecut {kind}"] = (torch_call(forms[form]), f"{form} (fastest of {len(forms)} forms at batch 16)")
    return engines


def peer_engines(directory, model, names, train, threads, calibration, transformer, failures):
    engines = {}
    onnx_path = os.path.join(directory, f"{model}.onnx")
    try:
        export_onnx(os.path.join(directory, f"{model}.pt"), names, train, onnx_path)
    except Exception as e:  # noqa: BLE001 - said in the table, never silently skipped
        failures["ONNX export"] = f"{type(e).__name__}: {str(e)[:200]}"
        return engines
    for family, make in (("ONNX Runtime", lambda: onnxruntime_engines(onnx_path, names, train, threads, calibration, directory)),
                         ("OpenVINO", lambda: openvino_engines(onnx_path, names, train, threads, calibration, transformer))):
        try:
            engines.update(make())
        except Exception as e:  # noqa: BLE001
            failures[family] = f"{type(e).__name__}: {str(e)[:200]}"
    return engines


def versions():
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("onnxruntime", "openvino", "nncf", "onnx", "numpy"):
        try:
            found[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            found[name] = "absent"
    return found


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("model")
    parser.add_argument("--ops", required=True, help="libjoulecut_ops.so of the LibTorch 2.x build")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=float, default=0.3, help="seconds per engine per round")
    parser.add_argument("--calibration", type=int, default=96, help="training samples the peers' int8 calibrates on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.ops.load_library(args.ops)
    names, test = load_inputs(os.path.join(args.dir, args.model, "test.npz"))
    _, train = load_inputs(os.path.join(args.dir, args.model, "train.npz"))
    calibration = min(args.calibration, len(train[0]))
    transformer = "input_ids" in names
    engines = torchscript_engines(args.dir, args.model, [a[:16] for a in test])
    failures = {}
    engines.update(peer_engines(args.dir, args.model, names, train, args.threads, calibration, transformer, failures))
    reference_label = next(iter(engines))  # TorchScript fp32 (plain): what every engine's fidelity is to
    reference = np.concatenate([engines[reference_label][0]([a[i:i + 16] for a in test])
                                for i in range(0, len(test[0]), 16)])
    report = {"model": args.model, "reference": reference_label, "engines": {}, "failures": failures,
              "manifest": {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": cpu_model(), "threads": args.threads,
                           "rounds": args.rounds, "window_seconds": args.window, "batches": list(BATCHES),
                           "test_samples": int(len(test[0])), "calibration_samples": calibration,
                           "inputs": ", ".join(f"{n} {list(a.shape[1:])} {a.dtype}" for n, a in zip(names, test)),
                           "versions": versions()}}
    timings = {b: time_engines(engines, test, b, args.rounds, args.window) for b in BATCHES}
    for label, (run, form) in engines.items():
        report["engines"][label] = {"form": form, "fidelity": fidelity(run, reference, test, not transformer),
                                    "batches": {str(b): timings[b][label] for b in BATCHES}}
    with open(os.path.join(args.dir, f"{args.model}-peers.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"peers: {args.model}: {len(engines)} engines measured, {len(failures)} failed")


if __name__ == "__main__":
    main()
