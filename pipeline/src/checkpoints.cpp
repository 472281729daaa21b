#include "checkpoints.h"

#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <map>

#include "mcompress/core/atomic_file.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"

namespace mcompress::pipeline::detail {
namespace {

std::string checkpoint_name(size_t index, const std::string& stage) {
  char prefix[24];
  std::snprintf(prefix, sizeof prefix, "%02zu-", index);
  return prefix + stage + ".h5";
}

// A temporary file that an interrupted run (SIGKILL, power loss) left next to one of the files
// it writes: save_model's "<name>.tmp-<pid>-<n>" whose process is gone, or
// write_file_atomically's ".<name>.tmp-XXXXXX" (docs/format.md: safe to delete). The run owns
// these names: two runs with the same output cannot share a checkpoint folder either.
bool is_stale_temp(const std::string& entry, const std::string& target) {
  const std::string dotted = "." + target + ".tmp-";
  if (entry.size() > dotted.size() && entry.compare(0, dotted.size(), dotted) == 0) return true;
  const std::string plain = target + ".tmp-";
  if (entry.size() <= plain.size() || entry.compare(0, plain.size(), plain) != 0) return false;
  const std::string rest = entry.substr(plain.size());
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos) return false;
  const std::string pid = rest.substr(0, dash);
  if (pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) return false;
  if (rest.find_first_not_of("0123456789", dash + 1) != std::string::npos) return false;
  return ::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH;
}

}  // namespace

// Removes the stale temporary files of `targets` (paths this run writes); never throws.
void remove_stale_temps(const std::vector<fs::path>& targets, std::ostream* log) {
  std::map<fs::path, std::vector<std::string>> by_folder;
  for (const auto& t : targets) {
    by_folder[t.has_parent_path() ? t.parent_path() : fs::path(".")].push_back(
        t.filename().string());
  }
  for (const auto& [folder, names] : by_folder) {
    std::error_code ec;
    fs::directory_iterator it(folder, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      const std::string entry = it->path().filename().string();
      for (const auto& name : names) {
        if (!is_stale_temp(entry, name)) continue;
        std::error_code removed;
        if (fs::remove(it->path(), removed) && log != nullptr) {
          *log << "removed " << it->path().string() << ", left by an interrupted run\n";
        }
        break;
      }
    }
  }
}

std::string Checkpoints::file(size_t index, const std::string& stage) const {
  return (dir_ / checkpoint_name(index, stage)).string();
}

void Checkpoints::start_fresh() {
  fs::create_directories(dir_);
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    if (name == "state.json" || (name.size() > 3 && name.substr(name.size() - 3) == ".h5")) {
      fs::remove(entry.path());
    }
  }
}

void Checkpoints::commit(const std::vector<StageRow>& rows, const std::string& last_file) const {
  nlohmann::json state;
  state["digest"] = recipe_.digest();
  state["completed_stages"] = rows.size() - 1;
  state["model"] = fs::path(last_file).filename().string();
  state["rows"] = nlohmann::json::array();
  for (const auto& r : rows) state["rows"].push_back(r.to_json());
  write_file_atomically((dir_ / "state.json").string(), state.dump(1) + "\n");
}

std::vector<fs::path> Checkpoints::targets() const {
  std::vector<fs::path> out{dir_ / checkpoint_name(0, "train"), dir_ / checkpoint_name(0, "start"),
                            dir_ / "state.json"};
  for (size_t i = 0; i < recipe_.stages.size(); ++i) {
    out.push_back(dir_ / checkpoint_name(i + 1, recipe_.stages[i].name));
  }
  if (!recipe_.model.cache.empty()) out.emplace_back(recipe_.model.cache);
  out.emplace_back(recipe_.output);
  for (const auto& r : report_paths(recipe_.output)) out.emplace_back(r);
  return out;
}

std::pair<std::vector<StageRow>, Model> Checkpoints::resume() const {
  const fs::path path = dir_ / "state.json";
  MCOMPRESS_CHECK(fs::exists(path), ConfigError, "--resume: no checkpoint in '", dir_.string(),
                  "'; run without --resume");
  nlohmann::json state;
  try {
    std::ifstream in(path);
    state = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw FormatError(path.string() + ": unreadable checkpoint state: " + e.what());
  }
  MCOMPRESS_CHECK(state.value("digest", "") == recipe_.digest(), ConfigError,
                  "--resume: the "
                  "checkpoint in '",
                  dir_.string(),
                  "' was made by another recipe or seed; "
                  "run without --resume to start over");
  std::vector<StageRow> rows;
  for (const auto& r : state.at("rows")) rows.push_back(StageRow::from_json(r));
  Model model = load_model((dir_ / state.at("model").get<std::string>()).string());
  return {std::move(rows), std::move(model)};
}

}  // namespace mcompress::pipeline::detail
