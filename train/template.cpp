// Conversation template strings (see template.h).
#include "train/template.h"

#include "csrc/error.h"

namespace beaver::train {

namespace {
void append_user_turn(std::string& out, std::string_view text) {
  out += kPromptUser;
  out += text;
  out += ' ';
  out += kPromptAssistant;
}
}  // namespace

std::string format_prompt(std::string_view input) {
  std::string out(kPromptBegin);
  append_user_turn(out, input);
  return out;
}

std::string format_dialogue(std::span<const std::string> turns, std::string_view eos) {
  BEAVER_CHECK(turns.size() % 2 == 1, "format_dialogue: ", turns.size(),
               " turns; a dialogue alternates user and assistant and ends with a user turn, "
               "so the count must be odd");
  std::string out(kPromptBegin);
  for (size_t i = 0; i < turns.size(); ++i) {
    if (i % 2 == 0) {
      append_user_turn(out, turns[i]);
    } else {
      out += turns[i];
      out += eos;
    }
  }
  return out;
}

std::string format_training_text(std::string_view formatted_prompt, std::string_view answer,
                                 std::string_view eos) {
  std::string out(formatted_prompt);
  out += answer;
  out += eos;
  return out;
}

std::string alpaca_prompt(std::string_view instruction, std::string_view input) {
  std::string out(instruction);
  if (!input.empty()) {
    out += ' ';
    out += input;
  }
  return out;
}

}  // namespace beaver::train
