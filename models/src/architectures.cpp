#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "joulecut/error.h"
#include "joulecut/models.h"
#include "joulecut/text.h"

// Each layer is its own small TorchScript class (Conv2d, BatchNorm2d, Linear) whose source
// mirrors what torch.nn's modules script to, so passes see the same shapes of graph in our
// models as in models scripted by Python.
namespace joulecut {
namespace {

using torch::jit::Module;

// Layers are initialised like torch.nn's defaults (Kaiming-uniform with a = sqrt(5)), but
// from our own generator, so a seed fixes every weight.
at::Tensor uniform(at::IntArrayRef shape, double bound, at::Generator& gen) {
  return at::empty(shape).uniform_(-bound, bound, gen);
}

Module conv2d(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
              std::int64_t groups, bool bias, at::Generator& gen, bool kaiming_fan_out = false) {
  Module m("Conv2d");
  m.register_attribute("training", c10::BoolType::get(), true);
  const double fan_in = double(in / groups * kernel * kernel);
  at::Tensor w;
  if (kaiming_fan_out) {  // torchvision's ResNet init: N(0, sqrt(2 / fan_out))
    const double fan_out = double(out / groups * kernel * kernel);
    w = at::empty({out, in / groups, kernel, kernel}).normal_(0, std::sqrt(2.0 / fan_out), gen);
  } else {
    w = uniform({out, in / groups, kernel, kernel}, 1.0 / std::sqrt(fan_in), gen);
  }
  m.register_parameter("weight", w, false);
  if (bias) m.register_parameter("bias", uniform({out}, 1.0 / std::sqrt(fan_in), gen), false);
  const std::string s = std::to_string(stride), p = std::to_string(padding);
  m.define("def forward(self, x):\n    return torch.conv2d(x, self.weight, " + std::string(bias ? "self.bias" : "None") +
           ", [" + s + ", " + s + "], [" + p + ", " + p + "], [1, 1], " + std::to_string(groups) + ")\n");
  return m;
}

Module batchnorm2d(std::int64_t channels) {
  Module m("BatchNorm2d");
  m.register_attribute("training", c10::BoolType::get(), true);
  m.register_parameter("weight", at::ones({channels}), false);
  m.register_parameter("bias", at::zeros({channels}), false);
  m.register_buffer("running_mean", at::zeros({channels}));
  m.register_buffer("running_var", at::ones({channels}));
  m.define(R"(
def forward(self, x):
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.training, 0.1, 1e-05, False)
)");
  return m;
}

Module linear(std::int64_t in, std::int64_t out, at::Generator& gen) {
  Module m("Linear");
  m.register_attribute("training", c10::BoolType::get(), true);
  const double bound = 1.0 / std::sqrt(double(in));
  m.register_parameter("weight", uniform({out, in}, bound, gen), false);
  m.register_parameter("bias", uniform({out}, bound, gen), false);
  m.define(R"(
def forward(self, x):
    return torch.linear(x, self.weight, self.bias)
)");
  return m;
}

Module container(const std::string& name) {
  Module m(name);
  m.register_attribute("training", c10::BoolType::get(), true);
  return m;
}

Module build_mlp(at::Generator& gen) {
  Module m = container("MLP");
  m.register_module("fc1", linear(784, 300, gen));
  m.register_module("fc2", linear(300, 100, gen));
  m.register_module("fc3", linear(100, 10, gen));
  m.define(R"(
def forward(self, x):
    x = torch.flatten(x, 1)
    x = torch.relu(self.fc1.forward(x))
    x = torch.relu(self.fc2.forward(x))
    return self.fc3.forward(x)
)");
  return m;
}

// LeNet-5 with its widths scaled (1: the classic 6, 16, 120, 84).
Module build_lenet5(at::Generator& gen, double width = 1) {
  const auto scaled = [&](std::int64_t n) { return std::max<std::int64_t>(1, std::int64_t(std::lround(double(n) * width))); };
  const std::int64_t c1 = scaled(6), c2 = scaled(16), f1 = scaled(120), f2 = scaled(84);
  Module m = container("LeNet5");
  m.register_module("conv1", conv2d(1, c1, 5, 1, 2, 1, true, gen));
  m.register_module("conv2", conv2d(c1, c2, 5, 1, 0, 1, true, gen));
  m.register_module("fc1", linear(c2 * 5 * 5, f1, gen));
  m.register_module("fc2", linear(f1, f2, gen));
  m.register_module("fc3", linear(f2, 10, gen));
  m.define(R"(
def forward(self, x):
    x = torch.max_pool2d(torch.relu(self.conv1.forward(x)), [2, 2], [2, 2], [0, 0], [1, 1], False)
    x = torch.max_pool2d(torch.relu(self.conv2.forward(x)), [2, 2], [2, 2], [0, 0], [1, 1], False)
    x = torch.flatten(x, 1)
    x = torch.relu(self.fc1.forward(x))
    x = torch.relu(self.fc2.forward(x))
    return self.fc3.forward(x)
)");
  return m;
}

// A ResNet basic block: two 3x3 conv+BN, with a 1x1 conv+BN shortcut when the shape changes.
Module basic_block(std::int64_t in, std::int64_t out, std::int64_t stride, at::Generator& gen) {
  Module m = container("BasicBlock");
  m.register_module("conv1", conv2d(in, out, 3, stride, 1, 1, false, gen, true));
  m.register_module("bn1", batchnorm2d(out));
  m.register_module("conv2", conv2d(out, out, 3, 1, 1, 1, false, gen, true));
  m.register_module("bn2", batchnorm2d(out));
  const bool project = stride != 1 || in != out;
  if (project) {
    m.register_module("shortcut_conv", conv2d(in, out, 1, stride, 0, 1, false, gen, true));
    m.register_module("shortcut_bn", batchnorm2d(out));
  }
  m.define(std::string(R"(
def forward(self, x):
    out = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    out = self.bn2.forward(self.conv2.forward(out))
)") + (project ? "    identity = self.shortcut_bn.forward(self.shortcut_conv.forward(x))\n" : "    identity = x\n") +
           "    return torch.relu(out + identity)\n");
  return m;
}

// ResNet-8 with base width `base` (16: the reference; 7: the thin student).
Module build_resnet8(at::Generator& gen, std::int64_t base = 16) {
  Module m = container("ResNet8");
  m.register_module("conv1", conv2d(1, base, 3, 1, 1, 1, false, gen, true));
  m.register_module("bn1", batchnorm2d(base));
  m.register_module("layer1", basic_block(base, base, 1, gen));
  m.register_module("layer2", basic_block(base, 2 * base, 2, gen));
  m.register_module("layer3", basic_block(2 * base, 4 * base, 2, gen));
  m.register_module("fc", linear(4 * base, 10, gen));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    x = self.layer1.forward(x)
    x = self.layer2.forward(x)
    x = self.layer3.forward(x)
    x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)
    return self.fc.forward(x)
)");
  return m;
}

// MobileNet-v1 style: depthwise 3x3 conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU.
Module separable_block(std::int64_t in, std::int64_t out, std::int64_t stride, at::Generator& gen) {
  Module m = container("SeparableBlock");
  m.register_module("dw", conv2d(in, in, 3, stride, 1, in, false, gen, true));
  m.register_module("dw_bn", batchnorm2d(in));
  m.register_module("pw", conv2d(in, out, 1, 1, 0, 1, false, gen, true));
  m.register_module("pw_bn", batchnorm2d(out));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.dw_bn.forward(self.dw.forward(x)))
    return torch.relu(self.pw_bn.forward(self.pw.forward(x)))
)");
  return m;
}

Module build_mobilenet(at::Generator& gen) {
  Module m = container("MobileNet");
  m.register_module("conv1", conv2d(1, 16, 3, 1, 1, 1, false, gen, true));
  m.register_module("bn1", batchnorm2d(16));
  m.register_module("block1", separable_block(16, 32, 1, gen));
  m.register_module("block2", separable_block(32, 64, 2, gen));
  m.register_module("block3", separable_block(64, 64, 1, gen));
  m.register_module("block4", separable_block(64, 128, 2, gen));
  m.register_module("fc", linear(128, 10, gen));
  m.define(R"(
def forward(self, x):
    x = torch.relu(self.bn1.forward(self.conv1.forward(x)))
    x = self.block1.forward(x)
    x = self.block2.forward(x)
    x = self.block3.forward(x)
    x = self.block4.forward(x)
    x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)
    return self.fc.forward(x)
)");
  return m;
}

// conv (no bias) + BatchNorm (+ ReLU6), as torchvision's Conv2dNormActivation.
Module conv_bn(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride, std::int64_t groups,
               bool relu6, at::Generator& gen) {
  Module m = container("Conv2dNormActivation");
  m.register_module("conv", conv2d(in, out, kernel, stride, (kernel - 1) / 2, groups, false, gen, true));
  m.register_module("bn", batchnorm2d(out));
  m.define(std::string("def forward(self, x):\n    x = self.bn.forward(self.conv.forward(x))\n") +
           (relu6 ? "    return torch.hardtanh(x, 0.0, 6.0)\n" : "    return x\n"));
  return m;
}

// MobileNetV2's inverted residual: 1x1 expansion, 3x3 depthwise (both ReLU6), linear 1x1
// projection; the skip connection behind `if self.use_res_connect:`, as torchvision writes it.
Module inverted_residual(std::int64_t in, std::int64_t out, std::int64_t stride, std::int64_t expand, at::Generator& gen) {
  Module m = container("InvertedResidual");
  const std::int64_t hidden = in * expand;
  m.register_attribute("use_res_connect", c10::BoolType::get(), stride == 1 && in == out);
  m.register_module("expand", conv_bn(in, hidden, 1, 1, 1, true, gen));
  m.register_module("depthwise", conv_bn(hidden, hidden, 3, stride, hidden, true, gen));
  m.register_module("project", conv_bn(hidden, out, 1, 1, 1, false, gen));
  m.define(R"(
def forward(self, x):
    out = self.project.forward(self.depthwise.forward(self.expand.forward(x)))
    if self.use_res_connect:
        return x + out
    else:
        return out
)");
  return m;
}

Module build_mobilenetv2(at::Generator& gen) {
  Module m = container("MobileNetV2");
  m.register_module("stem", conv_bn(1, 16, 3, 2, 1, true, gen));  // 28x28 -> 14x14, as MobileNetV2's stride-2 stem
  struct Stage {
    std::int64_t in, out, stride;
  };
  const Stage stages[] = {{16, 16, 1}, {16, 24, 2}, {24, 24, 1}, {24, 32, 2}, {32, 32, 1}, {32, 64, 1}, {64, 64, 1}};
  std::string body;
  int i = 0;
  for (const auto& s : stages) {
    const std::string name = "block" + std::to_string(++i);
    m.register_module(name, inverted_residual(s.in, s.out, s.stride, 4, gen));
    body += "    x = self." + name + ".forward(x)\n";
  }
  m.register_module("head", conv_bn(64, 256, 1, 1, 1, true, gen));
  m.register_module("classifier", linear(256, 10, gen));
  m.define("def forward(self, x):\n    x = self.stem.forward(x)\n" + body + R"(    x = self.head.forward(x)
    x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)
    return self.classifier.forward(x)
)");
  return m;
}

Module layer_norm(std::int64_t width) {
  Module m("LayerNorm");
  m.register_attribute("training", c10::BoolType::get(), true);
  m.register_parameter("weight", at::ones({width}), false);
  m.register_parameter("bias", at::zeros({width}), false);
  m.define("def forward(self, x):\n    return torch.layer_norm(x, [" + std::to_string(width) +
           "], self.weight, self.bias, 1e-06, True)\n");
  return m;
}

// nn.MultiheadAttention(width, heads, batch_first=True) as PyTorch scripts it: its class name,
// its attributes (packed in_proj_weight, out_proj, num_heads, batch_first, ...) and its
// forward's signature, so passes treat it as they treat PyTorch's (analysis/attention.h).
Module multihead_attention(std::int64_t width, std::int64_t heads, at::Generator& gen) {
  Module m("__torch__.torch.nn.modules.activation.MultiheadAttention");
  m.register_attribute("training", c10::BoolType::get(), true);
  m.register_attribute("num_heads", c10::IntType::get(), heads);
  m.register_attribute("batch_first", c10::BoolType::get(), true);
  m.register_attribute("add_zero_attn", c10::BoolType::get(), false);
  m.register_attribute("bias_k", c10::NoneType::get(), c10::IValue());
  m.register_attribute("_qkv_same_embed_dim", c10::BoolType::get(), true);
  const double bound = std::sqrt(6.0 / double(width + 3 * width));  // Xavier-uniform, as PyTorch's
  m.register_parameter("in_proj_weight", uniform({3 * width, width}, bound, gen), false);
  m.register_parameter("in_proj_bias", at::zeros({3 * width}), false);
  Module projection = linear(width, width, gen);
  projection.register_parameter("bias", at::zeros({width}), false);
  m.register_module("out_proj", projection);
  m.define(R"(
def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor] = None,
            need_weights: bool = True, attn_mask: Optional[Tensor] = None,
            average_attn_weights: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
    b = query.size(0)
    n = query.size(1)
    s = key.size(1)
    e = query.size(2)
    h = self.num_heads
    d = e // h
    w = self.in_proj_weight
    bias = self.in_proj_bias
    q = torch.linear(query, w[0:e], bias[0:e]).reshape([b, n, h, d]).transpose(1, 2)
    k = torch.linear(key, w[e:2 * e], bias[e:2 * e]).reshape([b, s, h, d]).transpose(1, 2)
    v = torch.linear(value, w[2 * e:], bias[2 * e:]).reshape([b, s, h, d]).transpose(1, 2)
    scores = torch.matmul(q / (float(d) ** 0.5), k.transpose(-2, -1))
    if attn_mask is not None:
        if attn_mask.is_floating_point():
            scores = scores + attn_mask
        else:
            scores = scores.masked_fill(attn_mask, float("-inf"))
    if key_padding_mask is not None:
        padding = key_padding_mask.view([b, 1, 1, s])
        if padding.is_floating_point():
            scores = scores + padding
        else:
            scores = scores.masked_fill(padding, float("-inf"))
    weights = torch.softmax(scores, -1)
    out = self.out_proj.forward(torch.matmul(weights, v).transpose(1, 2).reshape([b, n, e]))
    if need_weights:
        if average_attn_weights:
            return out, weights.mean(1)
        return out, weights
    return out, None
)");
  return m;
}

// A pre-norm transformer block, as torchvision's ViT EncoderBlock.
Module encoder_block(std::int64_t width, std::int64_t heads, std::int64_t mlp, at::Generator& gen) {
  Module m = container("EncoderBlock");
  m.register_module("ln_1", layer_norm(width));
  m.register_module("self_attention", multihead_attention(width, heads, gen));
  m.register_module("ln_2", layer_norm(width));
  m.register_module("mlp_1", linear(width, mlp, gen));
  m.register_module("mlp_2", linear(mlp, width, gen));
  m.define(R"(
def forward(self, x):
    y = self.ln_1.forward(x)
    y, _ = self.self_attention.forward(y, y, y, None, False)
    x = x + y
    y = self.mlp_2.forward(torch.gelu(self.mlp_1.forward(self.ln_2.forward(x))))
    return x + y
)");
  return m;
}

// A small ViT for 28x28 images: 4x4 patches (49 tokens and a class token), width 64, 4 heads,
// MLP 128, 4 pre-norm blocks.
Module build_vit(at::Generator& gen) {
  const std::int64_t width = 64, blocks = 4;
  Module m = container("VisionTransformer");
  m.register_module("conv_proj", conv2d(1, width, 4, 4, 0, 1, true, gen));
  m.register_parameter("class_token", at::zeros({1, 1, width}), false);
  m.register_parameter("pos_embedding", at::empty({1, 50, width}).normal_(0, 0.02, gen), false);
  std::string body;
  for (std::int64_t i = 0; i < blocks; ++i) {
    const std::string name = "block" + std::to_string(i + 1);
    m.register_module(name, encoder_block(width, 4, 2 * width, gen));
    body += "    x = self." + name + ".forward(x)\n";
  }
  m.register_module("ln", layer_norm(width));
  m.register_module("head", linear(width, 10, gen));
  m.define(R"(
def forward(self, x):
    x = self.conv_proj.forward(x)
    x = torch.flatten(x, 2).transpose(1, 2)
    x = torch.cat([self.class_token.expand([x.size(0), -1, -1]), x], 1) + self.pos_embedding
)" + body + R"(    x = self.ln.forward(x)
    return self.head.forward(x[:, 0])
)");
  return m;
}

}  // namespace

const std::vector<std::string>& reference_architectures() {
  static const std::vector<std::string> names = {"mlp",         "lenet5",       "resnet8", "mobilenet",
                                                 "mobilenetv2", "vit",          "lenet5-half", "resnet8-thin"};
  return names;
}

std::string describe_architecture(const std::string& arch) {
  static const std::map<std::string, std::string> text = {
      {"mlp", "LeNet-300-100: 784-300-100-10 fully connected, ReLU"},
      {"lenet5", "LeNet-5: conv5x5(6)-pool-conv5x5(16)-pool-fc120-fc84-fc10, ReLU"},
      {"resnet8", "ResNet-8: 3x3 stem(16) + 3 basic blocks (16, 32, 64), BatchNorm, skip connections"},
      {"mobilenet", "MobileNet-style: stem(16) + 4 depthwise-separable blocks (32, 64, 64, 128), BatchNorm"},
      {"mobilenetv2", "MobileNetV2-style: stride-2 stem(16) + 7 inverted residuals (expansion 4, ReLU6; 16, 24, 32, 64), "
                      "1x1 head(256), BatchNorm"},
      {"vit", "ViT: 4x4 patches (49 tokens + class token), width 64, 4 heads, MLP 128, 4 pre-norm blocks, GELU"},
      {"lenet5-half", "LeNet-5 at half width (student): conv5x5(3)-pool-conv5x5(8)-pool-fc60-fc42-fc10"},
      {"resnet8-thin", "ResNet-8 at 7/16 width (student, 1/5 of its parameters): stem(7) + 3 basic blocks (7, 14, 28)"},
  };
  const auto it = text.find(arch);
  return it == text.end() ? "" : it->second;
}

torch::jit::Module build_reference_model(const std::string& arch, std::uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::optional<Module> model;
  if (arch == "mlp") model = build_mlp(gen);
  if (arch == "lenet5") model = build_lenet5(gen);
  if (arch == "resnet8") model = build_resnet8(gen);
  if (arch == "mobilenet") model = build_mobilenet(gen);
  if (arch == "mobilenetv2") model = build_mobilenetv2(gen);
  if (arch == "vit") model = build_vit(gen);
  if (arch == "lenet5-half") model = build_lenet5(gen, 0.5);
  // Width 7, not 8: at half width the stem, BatchNorms and classifier (linear in width) leave
  // 19.8k parameters, over a quarter of ResNet-8's 77.8k; a distillation student should be under.
  if (arch == "resnet8-thin") model = build_resnet8(gen, 7);
  if (!model) throw UserError("unknown architecture '" + arch + "'; choose one of: " + join(reference_architectures(), ", "));
  // Like torch.nn.Parameter: trainable.
  for (const auto& p : model->parameters()) p.requires_grad_(true);
  return *model;
}

}  // namespace joulecut
