#pragma once
// Training progress on stderr: a live bar on a terminal, one plain line per epoch otherwise.

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace mcompress {

class Progress {
 public:
  /// interactive: redraw one line per batch ('\r'); otherwise print only per-epoch lines.
  Progress(std::ostream& out, bool interactive, bool enabled = true);
  /// True when stderr is a terminal.
  static bool stderr_is_terminal();

  void begin_epoch(int64_t epoch, int64_t epochs, int64_t batches);
  void update(int64_t batch, double loss, double accuracy);
  /// Ends the epoch's line with its summary, e.g. "val_acc 0.8912".
  void end_epoch(const std::string& summary);

 private:
  std::ostream& out_;
  bool interactive_;
  bool enabled_;
  int64_t epoch_ = 0, epochs_ = 0, batches_ = 0;
  double loss_ = 0, accuracy_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

/// "1m05s", "12.3s"
std::string format_duration(double seconds);

}  // namespace mcompress
