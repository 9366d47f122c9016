// Whole-run checkpoints: model + optimizer + progress (trainer_state.h).
#include "train/trainer_state.h"

#include <filesystem>
#include <fstream>

#include "csrc/atomic_file.h"
#include "csrc/error.h"
#include "csrc/log.h"
#include "model/checkpoint.h"
#include "model/loader.h"
#include "train/checkpoint_dir.h"

namespace beaver::train {

namespace {
constexpr const char* kMagic = "beaver-trainer-state";
constexpr int kVersion = 1;

nlohmann::json to_json(const TrainerProgress& p) {
  nlohmann::ordered_json j;
  j["magic"] = kMagic;
  j["format_version"] = kVersion;
  j["stage"] = p.stage;
  j["epoch"] = p.epoch;
  j["index"] = p.index;
  j["micro_batches"] = p.micro_batches;
  j["seed"] = p.seed;
  j["rng_position"] = p.rng_position;
  j["metrics_lines"] = p.metrics_lines;
  j["run_config"] = p.run_config;
  return j;
}

template <typename T>
T field(const nlohmann::json& j, const char* name, const std::string& where) {
  BEAVER_CHECK(j.contains(name), where, ": missing field \"", name, "\"");
  try {
    return j.at(name).get<T>();
  } catch (const nlohmann::json::exception&) {
    BEAVER_FAIL(where, ": field \"", name, "\" has the wrong type");
  }
}
}  // namespace

std::string save_trainer_state(const std::string& root, const model::LlamaModel& m,
                               const Optimizer& opt, const TrainerProgress& progress,
                               const std::string& tokenizer_dir, int keep,
                               Communicator* comm) {
  const bool root_rank = !comm || comm->is_root();
  return write_checkpoint(
      root, opt.step(),
      [&](const std::string& dir) {
        if (root_rank) model::save_weights(m, dir + "/model", DType::F32, tokenizer_dir);
        opt.save(dir + "/optimizer");
        if (root_rank)
          write_text_file(dir + "/trainer_state.json", to_json(progress).dump(2) + "\n");
      },
      keep, comm);
}

bool load_trainer_state(const std::string& root, model::LlamaModel& m, Optimizer& opt,
                        TrainerProgress& progress) {
  const std::string dir = latest_checkpoint(root);
  if (dir.empty()) return false;
  const std::string where = dir + "/trainer_state.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(where));
  } catch (const nlohmann::json::exception& e) {
    BEAVER_FAIL(where, ": not valid JSON (", e.what(), ")");
  }
  BEAVER_CHECK(j.is_object() && j.value("magic", "") == kMagic, where,
               ": not a Beaver trainer state (magic)");
  BEAVER_CHECK(j.value("format_version", 0) == kVersion, where, ": unsupported format_version");
  const auto stage = field<std::string>(j, "stage", where);
  BEAVER_CHECK(stage == progress.stage, where, ": the checkpoint is of stage '", stage,
               "', this run is '", progress.stage, "'");
  const nlohmann::json stored_cfg = j.contains("run_config") ? j["run_config"] : nlohmann::json();
  if (stored_cfg != progress.run_config) {
    for (const auto& [k, v] : progress.run_config.items()) {
      const auto it = stored_cfg.find(k);
      BEAVER_CHECK(it != stored_cfg.end() && *it == v, where, ": the run was started with ", k,
                   " = ", it == stored_cfg.end() ? std::string("(absent)") : it->dump(),
                   ", this run has ", v.dump(), "; resume with the same settings");
    }
    BEAVER_FAIL(where, ": the stored run configuration differs from this run's");
  }
  TrainerProgress p = progress;
  p.epoch = field<int64_t>(j, "epoch", where);
  p.index = field<int64_t>(j, "index", where);
  p.micro_batches = field<int64_t>(j, "micro_batches", where);
  p.seed = field<uint64_t>(j, "seed", where);
  p.rng_position = field<uint64_t>(j, "rng_position", where);
  p.metrics_lines = field<int64_t>(j, "metrics_lines", where);
  BEAVER_CHECK(p.epoch >= 0 && p.index >= 0 && p.micro_batches >= 0 && p.metrics_lines >= 0,
               where, ": negative counters");
  model::ModelKind kind{};
  model::checkpoint_config(dir + "/model", &kind);
  const model::ModelKind want =
      m.head() == model::Head::LM ? model::ModelKind::CausalLM : model::ModelKind::ScoreModel;
  BEAVER_CHECK(kind == want, dir, "/model: holds a ", model::kind_name(kind), ", the run trains a ",
               model::kind_name(want));
  model::load_weights(m, dir + "/model");
  opt.load(dir + "/optimizer");
  progress = p;
  log_info("resumed from ", dir, " (optimizer step ", opt.step(), ", epoch ", p.epoch,
           ", position ", p.index, ")");
  return true;
}

int64_t count_lines(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return 0;
  int64_t n = 0;
  char buf[1 << 16];
  while (f.read(buf, sizeof buf) || f.gcount() > 0) {
    for (std::streamsize i = 0; i < f.gcount(); ++i) n += buf[i] == '\n';
    if (!f) break;
  }
  return n;
}

void truncate_lines(const std::string& path, int64_t lines) {
  if (!std::filesystem::exists(path)) {
    BEAVER_CHECK(lines == 0, path, ": missing, but ", lines, " lines were expected");
    return;
  }
  const std::string text = read_text_file(path);
  size_t pos = 0;
  for (int64_t i = 0; i < lines; ++i) {
    const size_t nl = text.find('\n', pos);
    BEAVER_CHECK(nl != std::string::npos, path, ": has ", i, " complete lines, the checkpoint ",
                 "expects ", lines);
    pos = nl + 1;
  }
  if (pos < text.size()) write_text_file(path, std::string_view(text).substr(0, pos));
}

}  // namespace beaver::train
