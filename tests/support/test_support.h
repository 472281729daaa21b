#pragma once
// Shared test helpers: error-text assertions, temporary folders, small synthetic data.

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <string>

#include "mcompress/core/dataset.h"
#include "mcompress/core/model.h"

/// Asserts that `statement` throws an exception of type ExcT whose what() contains `substr`.
#define ASSERT_THROWS_WITH(statement, ExcT, substr)                                   \
  do {                                                                                \
    try {                                                                             \
      statement;                                                                      \
      FAIL() << "expected " #ExcT " containing '" << (substr) << "', nothing thrown"; \
    } catch (const ExcT& e) {                                                         \
      EXPECT_NE(std::string(e.what()).find(substr), std::string::npos)                \
          << "message was: " << e.what();                                             \
    }                                                                                 \
  } while (false)

namespace mcompress::testing {

/// Expects `fn` to throw a one-line ModelError whose message contains every one of `parts`.
void expect_model_error(const std::function<void()>& fn, std::initializer_list<std::string> parts);

/// A fresh folder under the system temp dir, removed with its content on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

/// What a shell command printed and how it ended.
struct ShellResult {
  int code = -1;    // exit status; -1 when the process did not exit normally
  std::string out;  // stdout and stderr together
};
/// Runs `command` through /bin/sh with stderr merged into stdout.
ShellResult run_shell(const std::string& command);

/// Reads a whole file as bytes.
std::string read_bytes(const std::string& path);
/// Writes bytes to a file (replacing it).
void write_bytes(const std::string& path, const std::string& bytes);

/// Ten separable classes of 28x28 images in [0,1]: class c lights block (c % 5, c / 5) of a
/// 5x2 grid (5 rows x 14 columns each) over uniform noise in [0, 0.3). Even one epoch of a tiny
/// model learns them, so tests that need a trained model stay fast.
Dataset block_images(int64_t n, uint64_t seed);

/// A zoo model (seed 0) trained briefly on `train` (Adam, lr 3e-3, batch 32, validating on
/// `val`): the starting point of the stage tests, which need a model that has learned.
Model quickly_trained(const std::string& zoo_name, const Dataset& train, const Dataset& val,
                      int64_t epochs = 2);

/// Writes `train` and `test` (images in [0, 1], 28x28) as Fashion-MNIST's four IDX files in
/// `dir`, so that anything taking a data folder can read them.
void write_idx_folder(const std::string& dir, const Dataset& train, const Dataset& test);

}  // namespace mcompress::testing
