#pragma once
// What a result needs to be reproduced: hardware, software, settings, seeds, protocol,
// meter. Embedded in every output format. Torch-free.
#include <string>
#include <utility>
#include <vector>

namespace joulecut::measure {

struct Manifest {
  std::vector<std::pair<std::string, std::string>> entries;  // in a stable, readable order
  void set(const std::string& key, const std::string& value);
  std::string get(const std::string& key) const;  // "" when absent
};

}  // namespace joulecut::measure
