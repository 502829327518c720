#pragma once
// Energy figures and where they come from. Torch-free.
//
// A figure read from a hardware counter and a figure computed from a model are different
// types (MeasuredEnergy, ModeledEnergy), so a modeled number cannot land in a measured column:
// reporters print each type under its own heading, with its provenance and source.
#include <string>
#include <vector>

namespace joulecut::measure {

// How a hardware figure was obtained.
enum class Provenance {
  measured,  // an energy counter (RAPL energy_uj, NVML total energy) read at window edges
  sampled,   // power polled and integrated over time (e.g. NVML power usage)
};
const char* provenance_name(Provenance p);

struct DomainEnergy {
  std::string name;  // "package-0", "dram", "gpu0"
  double joules = 0;
};

// One window read from a hardware meter.
struct MeasuredEnergy {
  double joules = 0;
  Provenance provenance = Provenance::measured;
  std::string meter;  // "rapl", "nvml"
  std::vector<DomainEnergy> domains;
  int wraps = 0;  // counter wraparounds corrected in this window
};

// A figure computed from a model; never a reading.
struct ModeledEnergy {
  double joules = 0;
  std::string model;   // "time x power", "op count x energy per op"
  std::string detail;  // constants used and their source
};

}  // namespace joulecut::measure
