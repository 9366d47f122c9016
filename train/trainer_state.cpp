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

std::string save_trainer_state(const std::string& root, const model::LlamaModel& m,
                               const Optimizer& opt, const TrainerProgress& progress,
                               const std::string& tokenizer_dir, int keep,
                               Communicator* comm) {
  const bool root_rank = !comm || comm->is_root();
  return write_checkpoint(
      root, opt.step(),
      [&](const std::string& dir) {
        // Sharded parameters: every rank joins the gather, rank 0 writes.
        if (root_rank || m.params_sharded())
          model::save_weights(m, dir + "/model", DType::F32, tokenizer_dir);
        opt.save(dir + "/optimizer");
        if (root_rank)
          write_text_file(dir + "/trainer_state.json",
                          trainer_state_json(progress).dump(2) + "\n");
      },
      keep, comm);
}

bool load_trainer_state(const std::string& root, model::LlamaModel& m, Optimizer& opt,
                        TrainerProgress& progress) {
  const std::string dir = latest_checkpoint(root);
  if (dir.empty()) return false;
  const std::string where = dir + "/trainer_state.json";
  const TrainerProgress p = parse_trainer_state(read_text_file(where), where, progress);
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
