#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "joulecut/error.h"
#include "joulecut/models.h"

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

}  // namespace

const std::vector<std::string>& reference_architectures() {
  static const std::vector<std::string> names = {"mlp", "lenet5", "resnet8", "mobilenet", "lenet5-half", "resnet8-thin"};
  return names;
}

std::string describe_architecture(const std::string& arch) {
  static const std::map<std::string, std::string> text = {
      {"mlp", "LeNet-300-100: 784-300-100-10 fully connected, ReLU"},
      {"lenet5", "LeNet-5: conv5x5(6)-pool-conv5x5(16)-pool-fc120-fc84-fc10, ReLU"},
      {"resnet8", "ResNet-8: 3x3 stem(16) + 3 basic blocks (16, 32, 64), BatchNorm, skip connections"},
      {"mobilenet", "MobileNet-style: stem(16) + 4 depthwise-separable blocks (32, 64, 64, 128), BatchNorm"},
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
  if (arch == "lenet5-half") model = build_lenet5(gen, 0.5);
  // Width 7, not 8: at half width the stem, BatchNorms and classifier (linear in width) leave
  // 19.8k parameters, over a quarter of ResNet-8's 77.8k; a distillation student should be under.
  if (arch == "resnet8-thin") model = build_resnet8(gen, 7);
  if (!model) {
    std::string known;
    for (const auto& name : reference_architectures()) known += (known.empty() ? "" : ", ") + name;
    throw UserError("unknown architecture '" + arch + "'; choose one of: " + known);
  }
  // Like torch.nn.Parameter: trainable.
  for (const auto& p : model->parameters()) p.requires_grad_(true);
  return *model;
}

}  // namespace joulecut
