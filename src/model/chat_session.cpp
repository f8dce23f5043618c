#include "model/chat_session.h"

#include <fmt/core.h>

#include <optional>
#include <string_view>

namespace qe::model {

Result<ResolvedTemplate> resolve_model_template(const Model& model, const std::string& name) {
  std::optional<std::string_view> gguf_template;
  Result<std::string> jinja = model.file.get_string("tokenizer.chat_template");
  if (jinja) gguf_template = *jinja;
  Result<tokenizer::ChatTemplate> tmpl = tokenizer::resolve_chat_template(name, gguf_template);
  if (!tmpl) {
    Error e = tmpl.error();
    // A template read from the model is the model's fault; a name given by the caller is the caller's.
    e.file = name.empty() ? model.path : "";
    if (!name.empty() && e.option.empty()) e.option = "chat_template";
    return e;
  }
  return ResolvedTemplate{*tmpl, !name.empty()   ? TemplateSource::named
                                 : gguf_template ? TemplateSource::model
                                                 : TemplateSource::default_chatml};
}

std::vector<int32_t> tokenize_chat(const Model& model, tokenizer::ChatTemplate t,
                                   std::span<const tokenizer::ChatMessage> messages) {
  return model.tok.tokenize(tokenizer::format_chat(t, messages, /*add_assistant_prompt=*/true),
                            /*add_special=*/true, /*parse_special=*/true);
}

Result<ChatSession> ChatSession::create(const Model& model, const ContextParams& ctx_params,
                                        const ChatParams& params) {
  Result<ResolvedTemplate> tmpl = resolve_model_template(model, params.template_name);
  if (!tmpl) return tmpl.error();
  Result<Context> ctx = Context::create(model, ctx_params);
  if (!ctx) return ctx.error();
  ChatSession s(std::move(*ctx), Sampler(params.sampling));
  s.tmpl_ = tmpl->tmpl;
  s.source_ = tmpl->source;
  if (!params.system_prompt.empty()) s.messages_.push_back({"system", params.system_prompt});
  return s;
}

Result<std::span<const int32_t>> ChatSession::add_user(std::string text) {
  if (awaiting_reply_) return Error{"", "", "the previous user message has not been answered yet"};
  ++n_turns_;
  // The new turn's text: what format_chat adds to the history already in the cache, after the end
  // marker of the previous reply. On the first turn all of it (a system message included).
  const std::string before = n_turns_ == 1 ? std::string() : tokenizer::format_chat(tmpl_, messages_, false);
  messages_.push_back({"user", std::move(text)});
  const std::string prompt = tokenizer::format_chat(tmpl_, messages_, /*add_assistant_prompt=*/true);
  size_t common = 0;
  while (common < before.size() && common < prompt.size() && before[common] == prompt[common]) ++common;
  const std::string added = pending_text_ + prompt.substr(common);
  // BOS (when the vocabulary adds it) opens the conversation only; template markers are special tokens.
  turn_ids_ = std::move(pending_ids_);
  const std::vector<int32_t> more =
      ctx_.model().tok.tokenize(added, /*add_special=*/n_turns_ == 1, /*parse_special=*/true);
  turn_ids_.insert(turn_ids_.end(), more.begin(), more.end());
  pending_text_.clear();
  pending_ids_.clear();
  awaiting_reply_ = true;
  return std::span<const int32_t>(turn_ids_);
}

Result<GenerateStats> ChatSession::generate_reply(const GenerateParams& params,
                                                  const StreamCallback& on_chunk) {
  if (!awaiting_reply_) return Error{"", "", "no user message to reply to"};
  awaiting_reply_ = false;
  const int64_t need = ctx_.n_past() + static_cast<int64_t>(turn_ids_.size());
  if (need > ctx_.n_ctx())
    return Error{
        "", "",
        fmt::format("the conversation needs {} tokens, more than the context of {}", need, ctx_.n_ctx()),
        "n_ctx"};
  for (int32_t id : turn_ids_) sampler_.accept_prompt(id);
  sampler_.reset_grammar();  // each reply a sentence of the grammar
  Result<std::span<const float>> logits = ctx_.eval(turn_ids_);
  if (!logits) return logits.error();

  // The reply's raw bytes go into the history (the template's tail is computed from them); the caller
  // sees the stream.
  std::string reply;
  auto collect = [&](const StreamChunk& c) {
    reply += c.piece;
    return on_chunk(c);
  };
  tokenizer::Utf8Stream out;
  GenerateParams p = params;
  p.echo_prompt = false;
  Result<GenerateStats> s = generate_from(ctx_, sampler_, *logits, p, collect, out);
  if (!s) return s;
  s->n_prompt = static_cast<int64_t>(turn_ids_.size());
  // An end-of-generation token is not kept: the template's tail (which starts with that marker) is
  // evaluated next turn. A reply cut short leaves its last token unevaluated: it goes first.
  if (s->unevaluated >= 0) pending_ids_.push_back(s->unevaluated);
  pending_text_ = tokenizer::assistant_turn_tail(tmpl_, messages_, reply);
  messages_.push_back({"assistant", std::move(reply)});
  turn_ids_.clear();
  return s;
}

Result<GenerateStats> ChatSession::reply(std::string text, const GenerateParams& params,
                                         const StreamCallback& on_chunk) {
  if (Result<std::span<const int32_t>> ids = add_user(std::move(text)); !ids) return ids.error();
  return generate_reply(params, on_chunk);
}

}  // namespace qe::model
