#include "test_support.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "mcompress/core/error.h"
#include "mcompress/core/train.h"
#include "mcompress/core/zoo.h"

namespace mcompress::testing {

void expect_model_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a ModelError, nothing thrown";
  } catch (const ModelError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const auto& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "missing '" << part << "' in: " << message;
    }
  }
}

ShellResult run_shell(const std::string& command) {
  ShellResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    r.out.append(buffer.data(), n);
  }
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TempDir::TempDir() {
  // The pid plus a random suffix keeps parallel ctest processes apart.
  std::random_device rd;
  auto base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto candidate =
        base / ("mcompress-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
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

namespace {

void put_be32(std::ofstream& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.write(b, 4);
}

void write_idx_split(const std::string& dir, const std::string& prefix, const Dataset& d) {
  std::ofstream images(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  std::ofstream labels(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  const auto n = static_cast<uint32_t>(d.size());
  put_be32(images, 0x803);
  put_be32(images, n);
  put_be32(images, 28);
  put_be32(images, 28);
  put_be32(labels, 0x801);
  put_be32(labels, n);
  const auto bytes =
      (d.x.reshape({d.size(), 28 * 28}).clamp(0, 1) * 255).round().to(at::kByte).contiguous();
  images.write(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), bytes.numel());
  const auto y = d.y.to(at::kByte).contiguous();
  labels.write(reinterpret_cast<const char*>(y.data_ptr<uint8_t>()), y.numel());
}

}  // namespace

void write_idx_folder(const std::string& dir, const Dataset& train, const Dataset& test) {
  write_idx_split(dir, "train", train);
  write_idx_split(dir, "t10k", test);
}

Model quickly_trained(const std::string& zoo_name, const Dataset& train, const Dataset& val,
                      int64_t epochs) {
  Model model = Model::initialize(zoo_spec(zoo_name), 0);
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.lr = 3e-3;
  o.progress = false;
  train_model(model, train, val, o);
  return model;
}

}  // namespace mcompress::testing
