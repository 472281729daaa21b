#include "test_support.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

namespace mcompress::testing {

TempDir::TempDir() {
  // The pid plus a random suffix keeps parallel ctest processes apart.
  std::random_device rd;
  auto base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate = base / ("mcompress-test-" + std::to_string(::getpid()) + "-" +
                             std::to_string(rd()));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary test folder");
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

Dataset block_images(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  Dataset d;
  d.x = at::rand({n, 1, 28, 28}, gen, at::kFloat) * 0.3;
  d.y = at::arange(n, at::kLong).remainder(10);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = d.y[i].item<int64_t>();
    d.x[i][0]
        .slice(0, (label % 5) * 5, (label % 5) * 5 + 5)
        .slice(1, (label / 5) * 14, (label / 5) * 14 + 14) += 0.7;
  }
  d.source = "blocks";
  return d;
}

}  // namespace mcompress::testing
