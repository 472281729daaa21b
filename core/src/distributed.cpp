#include "mcompress/core/distributed.h"

// The torch target defines USE_C10D_GLOO (Debian's libtorch_cpu.so is built with Gloo); the
// header hides the class without it.
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <glog/logging.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <limits>
#include <map>

namespace mcompress {

struct Distributed::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
};

namespace {

std::string seconds_text(std::chrono::milliseconds t) {
  std::ostringstream s;
  s << static_cast<double>(t.count()) / 1000.0 << " s";
  return s.str();
}

// The first line of a c10d/Gloo message, without Gloo's "[/path/to/file.cc:123] " prefix.
std::string first_line(const std::string& message) {
  std::string line = message.substr(0, message.find('\n'));
  if (!line.empty() && line.front() == '[') {
    const auto close = line.find("] ");
    if (close != std::string::npos && line.find(':') < close) line = line.substr(close + 2);
  }
  return line;
}

int64_t parse_int_env(const char* name, int64_t lo, int64_t hi) {
  const char* text = std::getenv(name);
  const std::string value = text;
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MCOMPRESS_CHECK(used == value.size() && used > 0 && v >= lo && v <= hi, ConfigError,
                  "environment variable ", name, "='", value, "' must be an integer in [", lo, ", ",
                  hi, "]");
  return v;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::unique_ptr<Distributed>& default_group() {
  static std::unique_ptr<Distributed> group = std::make_unique<Distributed>();
  return group;
}

}  // namespace

DistributedOptions DistributedOptions::from_environment() {
  DistributedOptions o;
  if (std::getenv("WORLD_SIZE"))
    o.world_size = static_cast<int>(parse_int_env("WORLD_SIZE", 1, 4096));
  if (std::getenv("RANK")) o.rank = static_cast<int>(parse_int_env("RANK", 0, 4095));
  if (const char* addr = std::getenv("MASTER_ADDR")) o.master_addr = addr;
  if (std::getenv("MASTER_PORT"))
    o.master_port = static_cast<int>(parse_int_env("MASTER_PORT", 1, 65535));
  return o;
}

void DistributedOptions::set_master(const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  MCOMPRESS_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < host_port.size(),
                  ConfigError, "--master '", host_port, "' must be HOST:PORT");
  const std::string port = host_port.substr(colon + 1);
  MCOMPRESS_CHECK(port.find_first_not_of("0123456789") == std::string::npos && port.size() <= 5,
                  ConfigError, "--master '", host_port, "': port '", port, "' is not a number");
  master_addr = host_port.substr(0, colon);
  if (master_addr.size() > 2 && master_addr.front() == '[' && master_addr.back() == ']') {
    master_addr = master_addr.substr(1, master_addr.size() - 2);  // [::1]:29500
  }
  master_port = std::stoi(port);
}

void DistributedOptions::validate() const {
  MCOMPRESS_CHECK(world_size >= 1, ConfigError, "world size must be >= 1, got ", world_size);
  MCOMPRESS_CHECK(rank >= 0 && rank < world_size, ConfigError, "rank must be in [0, ",
                  world_size - 1, "] for a world of ", world_size, ", got ", rank);
  MCOMPRESS_CHECK(master_port >= 1 && master_port <= 65535, ConfigError,
                  "master port must be in [1, 65535], got ", master_port);
  MCOMPRESS_CHECK(!master_addr.empty(), ConfigError, "master address is empty");
  MCOMPRESS_CHECK(timeout.count() > 0, ConfigError, "distributed timeout must be > 0, got ",
                  seconds_text(timeout));
}

Distributed::Distributed() = default;

Distributed::Distributed(const DistributedOptions& options) : options_(options) {
  options_.validate();
  if (!active()) return;
  // A write to a socket whose peer died raises SIGPIPE, which would end this process without
  // a word; ignored, the write fails and Gloo reports the closed connection instead.
  std::signal(SIGPIPE, SIG_IGN);
  // c10d also logs its failures through glog on stderr; they reach the user as one
  // DistributedError line instead.
  FLAGS_minloglevel = std::max(FLAGS_minloglevel, google::GLOG_FATAL);
  const std::string master = options_.master_addr + ":" + std::to_string(options_.master_port);
  group_ = std::make_unique<Group>();
  try {
    c10d::TCPStoreOptions store;
    store.port = static_cast<uint16_t>(options_.master_port);
    store.isServer = is_root();
    store.numWorkers = options_.world_size;
    // The Gloo rendezvous below waits for every rank within the timeout; the store's own wait
    // for workers would add a second timeout before it.
    store.waitWorkers = false;
    store.timeout = options_.timeout;
    group_->store = c10::make_intrusive<c10d::TCPStore>(options_.master_addr, store);
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(rank()) + " of " +
                           std::to_string(world_size()) + ": " +
                           (is_root() ? "serving the rendezvous at " : "reaching the master at ") +
                           master + " failed within the timeout of " +
                           seconds_text(options_.timeout) + ": " + first_line(e.what()));
  }
  try {
    auto gloo = c10d::ProcessGroupGloo::Options::create(options_.timeout);
    // Bind where this machine reaches the others: GLOO_SOCKET_IFNAME as torch.distributed
    // reads it, loopback for a one-machine run, else the address of this host's name.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (is_loopback(options_.master_addr)) {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      gloo->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    gloo->threads = 1;  // collectives are waited for one at a time
    group_->gloo =
        c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, rank(), world_size(), gloo);
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(rank()) + " of " +
                           std::to_string(world_size()) + ": connecting to the other ranks (" +
                           master + ") failed within the timeout of " +
                           seconds_text(options_.timeout) + ": " + first_line(e.what()));
  }
}

Distributed::~Distributed() = default;

void Distributed::fail(const std::string& operation, const std::string& what,
                       const std::string& cause, std::chrono::milliseconds timeout) const {
  throw DistributedError("rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) +
                         ": " + operation + " of " + what +
                         " failed (a peer died, hung or was unreachable; timeout " +
                         seconds_text(timeout) + "): " + first_line(cause));
}

void Distributed::collective(const std::vector<at::Tensor>& tensors, int op,
                             const std::string& what, std::chrono::milliseconds timeout) {
  if (!active() || tensors.empty()) return;
  if (timeout.count() <= 0) timeout = options_.timeout;
  const bool is_broadcast = op == kBroadcast;
  // One flat buffer per dtype: one collective instead of one per tensor. Gloo has no bool
  // type, so masks travel as bytes.
  std::map<at::ScalarType, std::vector<at::Tensor>> by_type;
  for (const auto& t : tensors) {
    by_type[t.scalar_type() == at::kBool ? at::kByte : t.scalar_type()].push_back(t);
  }
  for (auto& [type, list] : by_type) {
    std::vector<at::Tensor> flat;
    for (const auto& t : list) flat.push_back(t.detach().reshape({-1}).to(type));
    std::vector<at::Tensor> buffer{torch::cat(flat).contiguous()};
    const auto t0 = std::chrono::steady_clock::now();
    try {
      if (is_broadcast) {
        c10d::BroadcastOptions opts;
        opts.rootRank = 0;
        opts.timeout = timeout;
        group_->gloo->broadcast(buffer, opts)->wait(timeout);
      } else {
        c10d::AllreduceOptions opts;
        opts.reduceOp = static_cast<c10d::ReduceOp::RedOpType>(op);
        opts.timeout = timeout;
        group_->gloo->allreduce(buffer, opts)->wait(timeout);
      }
    } catch (const std::exception& e) {
      fail(is_broadcast ? "broadcast" : "all-reduce", what, e.what(), timeout);
    }
    seconds_in_collectives_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bytes_reduced_ += buffer[0].numel() * static_cast<int64_t>(buffer[0].element_size());
    torch::NoGradGuard no_grad;
    int64_t offset = 0;
    for (const auto& t : list) {
      const int64_t n = t.numel();
      t.copy_(buffer[0].slice(0, offset, offset + n).view(t.sizes()));  // converts bytes back
      offset += n;
    }
  }
}

void Distributed::all_reduce_sum(const std::vector<at::Tensor>& tensors, const std::string& what) {
  collective(tensors, c10d::ReduceOp::SUM, what, options_.timeout);
}
void Distributed::all_reduce_max(const std::vector<at::Tensor>& tensors, const std::string& what) {
  collective(tensors, c10d::ReduceOp::MAX, what, options_.timeout);
}
void Distributed::all_reduce_min(const std::vector<at::Tensor>& tensors, const std::string& what) {
  collective(tensors, c10d::ReduceOp::MIN, what, options_.timeout);
}
void Distributed::broadcast(const std::vector<at::Tensor>& tensors, const std::string& what,
                            std::chrono::milliseconds timeout) {
  collective(tensors, kBroadcast, what, timeout);
}

void Distributed::barrier(const std::string& what, std::chrono::milliseconds timeout) {
  if (!active()) return;
  // A one-byte broadcast: it returns only when rank 0 and every other rank are there.
  broadcast({torch::zeros({1}, torch::kUInt8)}, what, timeout);
}

Distributed& distributed() { return *default_group(); }

void init_distributed(const DistributedOptions& options) {
  default_group() = std::make_unique<Distributed>(options);
}

Shard shard_of(int64_t global_size, int rank, int world_size) {
  const int64_t base = global_size / world_size, extra = global_size % world_size;
  Shard s;
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  s.end = s.begin + base + (rank < extra ? 1 : 0);
  return s;
}

}  // namespace mcompress
