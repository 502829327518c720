#pragma once
// Fake powercap sysfs trees for the RAPL meter tests.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

inline void write_zone(const std::string& dir, const std::string& name, unsigned long long energy_uj,
                       unsigned long long max_uj = 262143328850ULL) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/name") << name << "\n";
  std::ofstream(dir + "/energy_uj") << energy_uj << "\n";
  std::ofstream(dir + "/max_energy_range_uj") << max_uj << "\n";
}

inline void set_energy(const std::string& dir, unsigned long long energy_uj) {
  std::ofstream(dir + "/energy_uj") << energy_uj << "\n";
}
