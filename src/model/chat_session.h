// A conversation with the model, as llama-cli's conversation mode runs it: a chat template, the message
// history, and one context whose KV cache holds the whole conversation. Each user turn evaluates only
// the text the new turn adds to the formatted history (llama.cpp's common_chat_format_single): the end
// marker of the previous reply, then the user's message and the assistant header.
//
//   Result<ChatSession> chat = ChatSession::create(model, {.n_ctx = 4096}, {.sampling = sp});
//   Result<GenerateStats> r = chat->reply("What is the capital of France?", {}, print_chunk);
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/error.h"
#include "model/context.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/sampler.h"
#include "tokenizer/chat_template.h"

namespace qe::model {

struct ChatParams {
  std::string template_name;  // llama.cpp's name ("chatml", "llama3", ...); "" = the model's, else chatml
  std::string system_prompt;  // "" = none
  SamplerParams sampling;
};

// Where the template came from.
enum class TemplateSource { named, model, default_chatml };

struct ResolvedTemplate {
  tokenizer::ChatTemplate tmpl = tokenizer::ChatTemplate::kChatml;
  TemplateSource source = TemplateSource::default_chatml;
};

// The template a chat with `model` uses: `name` (llama.cpp's) when not empty, else the model's, else
// chatml. Errors name the model file, or carry option "chat_template" for a bad name.
Result<ResolvedTemplate> resolve_model_template(const Model& model, const std::string& name);

// A whole conversation rendered with the assistant header appended and tokenized as a chat's first
// turn: BOS when the vocabulary adds it, template markers as special tokens. A stateless server's
// prompt; equal to what a ChatSession evaluates for the same messages in one turn.
std::vector<int32_t> tokenize_chat(const Model& model, tokenizer::ChatTemplate t,
                                   std::span<const tokenizer::ChatMessage> messages);

class ChatSession {
 public:
  // Resolves the template (errors name the model file, or carry option "chat_template" for a bad name)
  // and creates the context.
  static Result<ChatSession> create(const Model& model, const ContextParams& ctx_params,
                                    const ChatParams& params);

  // Adds the user's message to the history and returns the tokens the turn will evaluate: BOS (when the
  // vocabulary adds it) on the first turn, whatever of the previous reply the cache lacks, and the text
  // the template adds for this message. Error if the previous message is still waiting for its reply.
  Result<std::span<const int32_t>> add_user(std::string text);
  // Evaluates those tokens and generates the assistant's reply, streamed through on_chunk, into the
  // history. Error (option "n_ctx") when the turn does not fit in the context.
  Result<GenerateStats> generate_reply(const GenerateParams& params, const StreamCallback& on_chunk);
  // add_user + generate_reply.
  Result<GenerateStats> reply(std::string text, const GenerateParams& params, const StreamCallback& on_chunk);

  tokenizer::ChatTemplate chat_template() const { return tmpl_; }
  TemplateSource template_source() const { return source_; }
  std::span<const tokenizer::ChatMessage> messages() const { return messages_; }
  int64_t n_turns() const { return n_turns_; }  // user messages so far
  const Context& context() const { return ctx_; }
  const Sampler& sampler() const { return sampler_; }

 private:
  ChatSession(Context ctx, Sampler sampler) : ctx_(std::move(ctx)), sampler_(std::move(sampler)) {}

  Context ctx_;
  Sampler sampler_;  // one for the whole chat: its repeat history and random stream continue across turns
  tokenizer::ChatTemplate tmpl_ = tokenizer::ChatTemplate::kChatml;
  TemplateSource source_ = TemplateSource::default_chatml;
  std::vector<tokenizer::ChatMessage> messages_;
  std::string pending_text_;          // text the history holds but the cache does not: the reply's end marker
  std::vector<int32_t> pending_ids_;  // the last reply's final token when it was cut before evaluation
  std::vector<int32_t> turn_ids_;     // what add_user returned, until generate_reply evaluates it
  bool awaiting_reply_ = false;
  int64_t n_turns_ = 0;
};

}  // namespace qe::model
