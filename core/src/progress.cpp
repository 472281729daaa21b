#include "mcompress/core/progress.h"

#include <unistd.h>
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>

namespace mcompress {

Progress::Progress(std::ostream& out, bool interactive, bool enabled)
    : out_(out), interactive_(interactive), enabled_(enabled) {}

bool Progress::stderr_is_terminal() { return ::isatty(::fileno(stderr)) != 0; }

std::string format_duration(double seconds) {
  std::ostringstream s;
  if (seconds < 60) {
    s << std::fixed << std::setprecision(1) << seconds << "s";
  } else {
    const auto total = static_cast<int64_t>(seconds + 0.5);
    s << total / 60 << "m" << std::setw(2) << std::setfill('0') << total % 60 << "s";
  }
  return s.str();
}

void Progress::begin_epoch(int64_t epoch, int64_t epochs, int64_t batches) {
  epoch_ = epoch;
  epochs_ = epochs;
  batches_ = batches;
  loss_ = accuracy_ = 0;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void Progress::update(int64_t batch, double loss, double accuracy) {
  loss_ = loss;
  accuracy_ = accuracy;
  if (!enabled_ || !interactive_) return;
  const auto now = std::chrono::steady_clock::now();
  // Redrawing every batch would cost more than small batches do; 10 frames a second is plenty.
  if (batch != batches_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = batch > 0 ? elapsed / batch * (batches_ - batch) : 0;
  constexpr int kWidth = 24;
  const int filled = batches_ > 0 ? static_cast<int>(kWidth * batch / batches_) : 0;
  out_ << "\repoch " << epoch_ << "/" << epochs_ << " [" << std::string(filled, '=')
       << std::string(kWidth - filled, ' ') << "] " << batch << "/" << batches_ << " loss "
       << std::fixed << std::setprecision(4) << loss_ << " acc " << std::setprecision(4)
       << accuracy_ << " eta " << format_duration(eta) << "   " << std::flush;
}

void Progress::end_epoch(const std::string& summary) {
  if (!enabled_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (interactive_) out_ << "\r" << std::string(100, ' ') << "\r";
  out_ << "epoch " << epoch_ << "/" << epochs_ << "  loss " << std::fixed << std::setprecision(4)
       << loss_ << "  acc " << accuracy_ << "  " << summary << "  " << format_duration(elapsed)
       << std::endl;
}

}  // namespace mcompress
