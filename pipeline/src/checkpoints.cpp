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
        // Left by an interrupted run (SIGKILL, power loss): its writer is gone (atomic_file.h).
        if (!is_stale_temp_of(entry, name)) continue;
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
