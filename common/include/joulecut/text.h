#pragma once
// Numbers as people read them in tables and summaries. Torch-free.
#include <string>

namespace joulecut {

// 950, 77.8k, 1.25M, 3.10G
std::string human_count(double v);
// 512 B, 339.0 KiB, 1.25 MiB
std::string human_bytes(double v);

}  // namespace joulecut
