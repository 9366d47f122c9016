// The conversation template of the safe-rlhf models, as plain strings (tokenisation lives with
// the tokenizer). Exact strings matter: a model trained on one template and prompted with
// another degrades quietly, so every character here is pinned by tests.
//
//   single turn:  "BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:"
//   multi turn:   "BEGINNING OF CONVERSATION: " then "USER: {u} ASSISTANT:{a}</s>" for each
//                 earlier exchange, then "USER: {input} ASSISTANT:"
//   training:     formatted prompt + answer + EOS text, nothing inserted after "ASSISTANT:"
// BOS is not part of the text: the tokenizer adds it.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace beaver::train {

inline constexpr std::string_view kPromptBegin = "BEGINNING OF CONVERSATION: ";
inline constexpr std::string_view kPromptUser = "USER: ";  // then the text and one space
inline constexpr std::string_view kPromptAssistant = "ASSISTANT:";
inline constexpr std::string_view kEosText = "</s>";

// "BEGINNING OF CONVERSATION: USER: {input} ASSISTANT:"
std::string format_prompt(std::string_view input);

// turns = user, assistant, user, ..., user (odd count, ending with the question to answer);
// an even or zero count is an Error. Assistant turns are followed by eos.
std::string format_dialogue(std::span<const std::string> turns, std::string_view eos = kEosText);

// prompt (already formatted) + answer + eos.
std::string format_training_text(std::string_view formatted_prompt, std::string_view answer,
                                 std::string_view eos = kEosText);

// Alpaca's prompt text: instruction + ' ' + input when input is non-empty, else instruction.
std::string alpaca_prompt(std::string_view instruction, std::string_view input);

}  // namespace beaver::train
