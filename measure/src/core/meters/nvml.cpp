// NVIDIA GPUs through NVML, loaded at run time with dlopen so joulecut builds and runs
// where no driver exists; tests use a fake NVML library built by the test suite.
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "joulecut/error.h"
#include "joulecut/measure/meter.h"

namespace joulecut::measure {
namespace {

// The few NVML declarations used (from nvml.h, which is not needed at build time).
using nvmlReturn_t = int;
using nvmlDevice_t = void*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlNotSupported = 3;

struct NvmlApi {
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*handle_by_index)(unsigned, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*total_energy)(nvmlDevice_t, unsigned long long*) = nullptr;
  nvmlReturn_t (*power_usage)(nvmlDevice_t, unsigned*) = nullptr;
  nvmlReturn_t (*device_name)(nvmlDevice_t, char*, unsigned) = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
};

using Clock = std::chrono::steady_clock;

class NvmlMeter final : public Meter {
 public:
  explicit NvmlMeter(const NvmlOptions& options) : options_(options) { open(); }
  ~NvmlMeter() override {
    stop_sampler();
    if (initialised_ && api_.shutdown) api_.shutdown();
    if (handle_) dlclose(handle_);
  }

  std::string name() const override { return "nvml"; }
  bool supported() const override { return why_.empty(); }
  std::string why_unsupported() const override { return why_; }
  std::string domains() const override {
    if (!supported()) return "";
    return device_name_ + " (gpu " + std::to_string(options_.device_index) + ") " +
           (has_counter_ ? "total-energy counter"
                         : "power usage sampled every 20 ms (no total-energy counter: pre-Volta GPU)");
  }
  double update_period_seconds() const override { return update_period_; }

  void start() override {
    JOULECUT_ASSERT(supported(), "NVML meter used while unsupported");
    if (has_counter_) {
      start_mj_ = read_energy_mj();
    } else {
      sampled_joules_ = 0;
      running_ = true;
      sampler_ = std::thread([this] { sample_loop(); });
    }
  }

  void poll() override {}  // a 64-bit millijoule counter does not wrap in practice

  MeasuredEnergy stop() override {
    if (!has_counter_) stop_sampler();
    return read();
  }

  MeasuredEnergy read() override {
    MeasuredEnergy out;
    out.meter = "nvml";
    if (has_counter_) {
      out.provenance = Provenance::measured;
      out.joules = double(read_energy_mj() - start_mj_) * 1e-3;
    } else {
      std::lock_guard<std::mutex> lock(mutex_);
      out.provenance = Provenance::sampled;
      out.joules = sampled_joules_;
    }
    out.domains.push_back({"gpu" + std::to_string(options_.device_index), out.joules});
    return out;
  }

 private:
  template <typename F>
  bool load(F* target, const char* symbol) {
    *target = reinterpret_cast<F>(dlsym(handle_, symbol));
    return *target != nullptr;
  }

  std::string error_text(nvmlReturn_t code) const {
    const char* text = api_.error_string ? api_.error_string(code) : nullptr;
    return (text ? std::string(text) : "NVML error") + " (code " + std::to_string(code) + ")";
  }

  void open() {
    handle_ = dlopen(options_.library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      const char* error = dlerror();
      why_ = "cannot load " + options_.library + " (no NVIDIA driver here): " + (error ? error : "unknown error");
      return;
    }
    if (!load(&api_.init, "nvmlInit_v2") || !load(&api_.shutdown, "nvmlShutdown") ||
        !load(&api_.handle_by_index, "nvmlDeviceGetHandleByIndex_v2") ||
        !load(&api_.power_usage, "nvmlDeviceGetPowerUsage") || !load(&api_.device_name, "nvmlDeviceGetName")) {
      why_ = options_.library + " lacks the NVML functions joulecut needs (driver too old?)";
      return;
    }
    load(&api_.error_string, "nvmlErrorString");
    load(&api_.total_energy, "nvmlDeviceGetTotalEnergyConsumption");
    nvmlReturn_t rc = api_.init();
    if (rc != kNvmlSuccess) {
      why_ = "nvmlInit failed: " + error_text(rc);
      return;
    }
    initialised_ = true;
    rc = api_.handle_by_index(options_.device_index, &device_);
    if (rc != kNvmlSuccess) {
      why_ = "GPU " + std::to_string(options_.device_index) + ": " + error_text(rc);
      return;
    }
    char name[96] = {};
    if (api_.device_name(device_, name, sizeof name) == kNvmlSuccess) device_name_ = name;
    unsigned long long mj = 0;
    has_counter_ = api_.total_energy && api_.total_energy(device_, &mj) == kNvmlSuccess;
    if (!has_counter_) {
      unsigned mw = 0;
      rc = api_.power_usage(device_, &mw);
      if (rc != kNvmlSuccess) {
        why_ = "GPU " + std::to_string(options_.device_index) + " reports neither energy nor power: " + error_text(rc);
        return;
      }
      update_period_ = 1.0;  // power usage is a 1 s average on Ampere and newer
      return;
    }
    update_period_ = measure_update_period();
  }

  unsigned long long read_energy_mj() const {
    unsigned long long mj = 0;
    const nvmlReturn_t rc = api_.total_energy(device_, &mj);
    if (rc != kNvmlSuccess) throw UserError("NVML total energy read failed: " + error_text(rc));
    return mj;
  }

  // Time between two changes of the counter (10-100 ms on real GPUs), bounded to 1 s.
  double measure_update_period() const {
    const auto deadline = Clock::now() + std::chrono::seconds(1);
    unsigned long long last = read_energy_mj();
    std::vector<Clock::time_point> changes;
    while (Clock::now() < deadline && changes.size() < 3) {
      const unsigned long long now = read_energy_mj();
      if (now != last) {
        changes.push_back(Clock::now());
        last = now;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    if (changes.size() < 2) return 1.0;  // idle or coarse: assume the worst documented period
    return std::chrono::duration<double>(changes.back() - changes.front()).count() / double(changes.size() - 1);
  }

  void sample_loop() {
    auto last_time = Clock::now();
    unsigned last_mw = 0;
    api_.power_usage(device_, &last_mw);
    while (running_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      unsigned mw = 0;
      if (api_.power_usage(device_, &mw) != kNvmlSuccess) continue;
      const auto now = Clock::now();
      const double dt = std::chrono::duration<double>(now - last_time).count();
      std::lock_guard<std::mutex> lock(mutex_);
      sampled_joules_ += 0.5 * (double(mw) + double(last_mw)) * 1e-3 * dt;  // trapezoid
      last_time = now;
      last_mw = mw;
    }
  }

  void stop_sampler() {
    running_ = false;
    if (sampler_.joinable()) sampler_.join();
  }

  NvmlOptions options_;
  void* handle_ = nullptr;
  NvmlApi api_;
  bool initialised_ = false;
  nvmlDevice_t device_ = nullptr;
  std::string device_name_ = "NVIDIA GPU";
  bool has_counter_ = false;
  double update_period_ = 0.1;
  std::string why_;
  unsigned long long start_mj_ = 0;
  std::thread sampler_;
  std::atomic<bool> running_{false};
  std::mutex mutex_;
  double sampled_joules_ = 0;
};

}  // namespace

std::unique_ptr<Meter> make_nvml_meter(const NvmlOptions& options) { return std::make_unique<NvmlMeter>(options); }

}  // namespace joulecut::measure
