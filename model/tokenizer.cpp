// Sentencepiece wrapper (see tokenizer.h for the conventions).
#include "model/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <unordered_map>

#include "csrc/dtype.h"

namespace beaver::model {

namespace {

constexpr std::string_view kBosString = "<s>";
constexpr std::string_view kEosString = "</s>";
constexpr std::string_view kPadString = "<pad>";

// In-memory lines for the sentencepiece trainer.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return i_ >= lines_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return lines_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& lines_;
  size_t i_ = 0;
};

}  // namespace

Tokenizer::Tokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  Tokenizer t;
  const auto st = t.sp_->Load(path);
  if (!st.ok()) BEAVER_FAIL("tokenizer: cannot load sentencepiece model '", path, "': ", st.ToString());
  t.init_ids();
  return t;
}

Tokenizer Tokenizer::from_serialized(const std::string& model_proto, const std::string& what) {
  Tokenizer t;
  const auto st = t.sp_->LoadFromSerializedProto(model_proto);
  if (!st.ok())
    BEAVER_FAIL("tokenizer: cannot load sentencepiece model from ", what, ": ", st.ToString());
  t.init_ids();
  return t;
}

void Tokenizer::init_ids() {
  sp_size_ = sp_->GetPieceSize();
  bos_ = sp_->bos_id();
  eos_ = sp_->eos_id();
  unk_ = sp_->unk_id();
  BEAVER_CHECK(bos_ >= 0 && eos_ >= 0, "tokenizer: the sentencepiece model defines no BOS (",
               bos_, ") or EOS (", eos_, ") token; LLaMA tokenizers have both");
  pad_ = sp_->pad_id();
  pad_from_model_ = pad_ >= 0;
}

int32_t Tokenizer::add_pad_token() {
  if (pad_ < 0) pad_ = sp_size_;
  return pad_;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int32_t> out;
  if (add_bos) out.push_back(bos_);
  // Special strings recognised inside the text, with their ids.
  std::vector<std::pair<std::string_view, int32_t>> specials = {{kBosString, bos_},
                                                                {kEosString, eos_}};
  if (pad_ >= 0) specials.emplace_back(kPadString, pad_);
  std::vector<int> ids;
  auto encode_plain = [&](std::string_view chunk) {
    if (chunk.empty()) return;
    ids.clear();
    const auto st = sp_->Encode(absl::string_view(chunk.data(), chunk.size()), &ids);
    if (!st.ok()) BEAVER_FAIL("tokenizer: cannot encode text: ", st.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string_view::npos;
    int32_t best_id = -1;
    size_t best_len = 0;
    for (const auto& [s, id] : specials) {
      const size_t at = text.find(s, pos);
      if (at < best) {
        best = at;
        best_id = id;
        best_len = s.size();
      }
    }
    if (best == std::string_view::npos) {
      encode_plain(text.substr(pos));
      break;
    }
    encode_plain(text.substr(pos, best - pos));
    out.push_back(best_id);
    pos = best + best_len;
  }
  if (add_eos) out.push_back(eos_);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::vector<int> keep;
  keep.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    BEAVER_CHECK(id >= 0 && id < vocab_size(), "tokenizer: cannot decode id ", id,
                 " at position ", i, " (vocabulary size ", vocab_size(), ")");
    if (is_special(id)) continue;
    keep.push_back(id);
  }
  std::string text;
  const auto st = sp_->Decode(keep, &text);
  if (!st.ok()) BEAVER_FAIL("tokenizer: cannot decode ids: ", st.ToString());
  return text;
}

std::string Tokenizer::piece(int32_t id) const {
  BEAVER_CHECK(id >= 0 && id < vocab_size(), "tokenizer: no piece for id ", id,
               " (vocabulary size ", vocab_size(), ")");
  if (id == pad_ && !pad_from_model_) return std::string(kPadString);
  return sp_->IdToPiece(id);
}

std::string train_sentencepiece(const std::vector<std::string>& lines, int vocab_size,
                                const std::string& model_type) {
  BEAVER_CHECK(!lines.empty(), "train_sentencepiece: no training lines");
  BEAVER_CHECK(vocab_size > 3, "train_sentencepiece: vocab_size ", vocab_size, " too small");
  const std::unordered_map<std::string, std::string> args = {
      {"vocab_size", std::to_string(vocab_size)},
      {"model_type", model_type},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"character_coverage", "1.0"},
      {"normalization_rule_name", "identity"},
      {"minloglevel", "2"},
      {"num_threads", "1"},
  };
  LineIterator it(lines);
  std::string proto;
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
  if (!st.ok()) BEAVER_FAIL("train_sentencepiece: ", st.ToString());
  return proto;
}

void grow_rows_with_mean(const Tensor& src, const Tensor& dst) {
  expect_rank(src, 2, "grow_rows_with_mean", "src");
  expect_rank(dst, 2, "grow_rows_with_mean", "dst");
  const int64_t v_old = src.size(0), h = src.size(1), v_new = dst.size(0);
  BEAVER_CHECK(dst.size(1) == h, "grow_rows_with_mean: dst has ", dst.size(1),
               " columns, src ", h);
  BEAVER_CHECK(v_new >= v_old && v_old > 0, "grow_rows_with_mean: cannot grow ", v_old,
               " rows to ", v_new);
  BEAVER_CHECK(is_float(dst.dtype), "grow_rows_with_mean: dst must be a float tensor, got ",
               dst.str());
  const std::vector<float> s = to_host_f32(src);
  std::vector<double> mean(size_t(h), 0.0);
  for (int64_t r = 0; r < v_old; ++r)
    for (int64_t j = 0; j < h; ++j) mean[size_t(j)] += s[size_t(r * h + j)];
  OwnedTensor host(dst.dtype, dst.shape);
  for (int64_t r = 0; r < v_new; ++r) {
    for (int64_t j = 0; j < h; ++j) {
      const size_t i = size_t(r * h + j);
      const float x = r < v_old ? s[i] : float(mean[size_t(j)] / double(v_old));
      switch (dst.dtype) {
        case DType::F32: host.ptr<float>()[i] = x; break;
        case DType::BF16: host.ptr<bf16>()[i] = to_bf16(x); break;
        case DType::F16: host.ptr<f16>()[i] = to_f16(x); break;
        default: BEAVER_FAIL("grow_rows_with_mean: unreachable dtype");
      }
    }
  }
  copy_tensor(dst, host.view());
}

}  // namespace beaver::model
