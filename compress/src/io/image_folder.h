#pragma once
// Internal: image folders for load_dataset (joulecut/data.h).
#include <optional>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/image.h"

namespace joulecut {

struct ImageFolderIndex {
  std::string root;
  std::vector<std::string> class_names;  // sorted, as torchvision's ImageFolder
  std::vector<std::string> files;        // by class, sorted within
  std::vector<std::int64_t> labels;
};

// A directory with at least one subdirectory holding a .png/.jpg/.jpeg.
bool looks_like_image_folder(const std::string& root);

// Throws UserError naming the folder when a class folder is empty or there are no images.
ImageFolderIndex index_image_folder(const std::string& root);

// The folder decoded and preprocessed as `source` says (resize, crop, mean, std, color), in
// memory when it decodes to at most source.cache_mb, else streamed. Normalization statistics
// come from `statistics_root` (the training split) when neither the flags nor `normalization` give them.
TensorDataset load_image_folder(const std::string& root, const DataSource& source, const char* split,
                                const std::optional<DatasetSpec>& normalization, const std::string& statistics_root);

}  // namespace joulecut
