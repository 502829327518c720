#pragma once
// Where a model's data comes from and how it is read: the data set (recognized by content), the
// model's input spec, and image preprocessing. The flags of every subcommand and the keys of a
// recipe fill the same struct. Torch-free.
#include <cstdint>
#include <string>

namespace joulecut {

// Where data comes from. `data` (or, per split, `train_data` / `test_data`) is recognized by
// content, not by name:
//  "fashion-mnist": /usr/share/datasets/fashion-mnist (or $JOULECUT_FASHION_MNIST_DIR)
//  a directory holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] like MNIST
//  a NumPy .npy of inputs (any shape and dtype; `labels` may name a labels .npy), or an .npz
//    whose arrays are named after forward()'s arguments, plus an optional `labels`
//  a CIFAR-10 / CIFAR-100 binary batch file
//  a directory holding those per split: train.npz and test.npz (or val.npz); CIFAR-10's
//    data_batch_*.bin and test_batch.bin; CIFAR-100's train.bin and test.bin
//  an image folder as torchvision's ImageFolder: ROOT/CLASS/*.png|jpg, or ROOT/train/CLASS/...
//    and ROOT/test/CLASS/... (or val); decoded, resized, cropped and normalized per channel.
//    A folder that decodes to more than `cache_mb` streams: batches are decoded on demand, the
//    next one on a background thread, so at most two batches are in memory.
// images + labels: one explicit IDX pair, used for whichever split is asked for.
// One file is one split: the training split (calibration, training) then needs --train-data.
struct DataSource {
  std::string data = "fashion-mnist";
  std::string images;
  std::string labels;
  std::string train_data, test_data;  // a split each, in any of the forms above
  bool data_given = false;  // --data given (else `data` is the default)
  // The model's input (joulecut/input_spec.h) and the output that holds its scores.
  std::string input_shape, input_dtype, input_range;
  std::string output;  // --model-output INDEX|KEY for tuple, list and dict outputs
  // Image folders: torchvision's Resize(resize) and CenterCrop(crop), per-channel mean and std
  // ("0.485,0.456,0.406", or one value for all; empty: the model's metadata, else the data's own
  // statistics), and the color ("rgb", "gray"; empty: the model's channels, else rgb).
  int resize = 0, crop = 0;
  std::string mean, stddev, color;
  std::int64_t cache_mb = 2048;
  // One data file (no train_data/test_data) for work that calibrates or trains: the first three
  // quarters are the training split, the last quarter the held-out test split; otherwise one
  // file is the test split only. Set by the pipeline when a pass needs training data.
  bool split_one_file = false;
  bool given() const { return data_given || !images.empty() || !train_data.empty() || !test_data.empty(); }
};

}  // namespace joulecut
