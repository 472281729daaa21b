#pragma once
// Data-parallel runs across processes on PyTorch's own c10d: a TCPStore for the rendezvous at
// the master address and a Gloo process group for the collectives. Like torch.distributed,
// there is one process-wide default group: the CLI initialises it once from its flags or the
// torchrun environment (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT), and the training loop,
// calibration, pruning and the writers ask it for the rank. A world of 1 (the default) has no
// process group at all: every collective returns at once and costs nothing.

#include <ATen/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mcompress/core/error.h"

namespace mcompress {

/// A collective that failed or timed out: a peer died, hung or could not connect. The
/// message is one line naming this rank, the operation, the peer where known, and the timeout.
class DistributedError : public Error {
 public:
  using Error::Error;
};

/// Where this process sits in a data-parallel run.
/// Example: DistributedOptions o; o.world_size = 2; o.rank = 1; o.master_port = 29500;
struct DistributedOptions {
  int world_size = 1;
  int rank = 0;                           // 0 .. world_size-1; rank 0 hosts the store
  std::string master_addr = "127.0.0.1";  // host name or address of rank 0
  int master_port = 29500;
  /// How long a rendezvous or a collective waits for the slowest peer before failing.
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};

  /// The torchrun environment: WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT (each optional;
  /// absent ones keep the defaults above). ConfigError naming the variable for a bad value.
  static DistributedOptions from_environment();
  /// "HOST:PORT" into master_addr/master_port; ConfigError on a malformed address.
  void set_master(const std::string& host_port);
  /// ConfigError naming the field: world_size >= 1, 0 <= rank < world_size, port in 1..65535,
  /// timeout > 0.
  void validate() const;
};

/// A process group of world_size ranks (or none, for a world of 1).
class Distributed {
 public:
  /// A world of 1: no process group.
  Distributed();
  /// Joins the group: connects to (rank 0: serves) the store, then waits for every rank.
  /// DistributedError naming the master address and the timeout when a rank does not come.
  explicit Distributed(const DistributedOptions& options);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  bool active() const { return options_.world_size > 1; }
  /// Rank 0: the one that writes files and reports.
  bool is_root() const { return options_.rank == 0; }
  const DistributedOptions& options() const { return options_; }

  /// Element-wise sum over ranks, in place; every rank ends with the same values. Tensors of
  /// one dtype are packed into one buffer, so the cost is one collective per call.
  /// `what` names the data in an error ("gradients").
  void all_reduce_sum(const std::vector<at::Tensor>& tensors, const std::string& what);
  /// Element-wise maximum (minimum) over ranks, in place.
  void all_reduce_max(const std::vector<at::Tensor>& tensors, const std::string& what);
  void all_reduce_min(const std::vector<at::Tensor>& tensors, const std::string& what);
  /// Rank 0's values onto every rank, in place (bool tensors included). `timeout` (0: the
  /// group's) is for a broadcast that waits while rank 0 works alone (measuring, writing).
  void broadcast(const std::vector<at::Tensor>& tensors, const std::string& what,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  /// Waits until every rank arrives; `timeout` as for broadcast.
  void barrier(const std::string& what,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  /// Bytes this process has sent into all-reduces and broadcasts so far (payload only: the
  /// tensors' bytes, not Gloo's ring traffic, which is about 2 (W-1)/W times that).
  int64_t bytes_reduced() const { return bytes_reduced_; }
  /// Wall-clock seconds this process has spent in collectives so far: the transfer and the
  /// wait for the slowest rank.
  double seconds_in_collectives() const { return seconds_in_collectives_; }

 private:
  struct Group;
  static constexpr int kBroadcast = -1;  // else a c10d::ReduceOp
  /// Packs `tensors` by dtype, runs the all-reduce `op` (or a broadcast from rank 0) on each
  /// buffer, unpacks in place. DistributedError on failure.
  void collective(const std::vector<at::Tensor>& tensors, int op, const std::string& what,
                  std::chrono::milliseconds timeout);
  [[noreturn]] void fail(const std::string& operation, const std::string& what,
                         const std::string& cause, std::chrono::milliseconds timeout) const;

  DistributedOptions options_;
  std::unique_ptr<Group> group_;
  int64_t bytes_reduced_ = 0;
  double seconds_in_collectives_ = 0;
};

/// The process-wide default group (a world of 1 until init_distributed).
Distributed& distributed();
/// Replaces the default group; call once, before any training. Errors as Distributed's
/// constructor.
void init_distributed(const DistributedOptions& options);

/// The rows of a global batch of `global_size` rows that `rank` of `world_size` takes: a
/// contiguous [begin, end) slice; the first global_size % world_size ranks take one row more.
struct Shard {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Shard shard_of(int64_t global_size, int rank, int world_size);

}  // namespace mcompress
