#include "cli/sampling_flags.h"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "model/json_schema_grammar.h"

namespace qe::cli {

Result<model::LogitBias> parse_logit_bias(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return Error{"", "--logit-bias",
                 fmt::format("'{}' {} (TOKEN_ID+BIAS or TOKEN_ID-BIAS, e.g. 15043+1 or 15043-inf)",
                             printable(text), why)};
  };
  model::LogitBias b;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, b.id);
  if (ec != std::errc() || p == text.data()) return bad("does not start with a token id");
  if (b.id < 0) return bad("has a negative token id");
  if (p == end || (*p != '+' && *p != '-')) return bad("has no + or - after the token id");
  // The sign belongs to the bias; -inf bans the token, as in llama-cli. +inf would make the softmax's
  // probabilities NaN: a large finite bias (+100) makes a token all but certain instead.
  const std::string_view rest(p, static_cast<size_t>(end - p));
  if (rest == "-inf") {
    b.bias = -INFINITY;
    return b;
  }
  if (rest == "+inf") return bad("asks for +inf, which no probability can hold (use e.g. +100)");
  const char* from = *p == '+' ? p + 1 : p;
  auto [q, ec2] = std::from_chars(from, end, b.bias);
  if (ec2 != std::errc() || q != end || !std::isfinite(b.bias) || (from != p && *from == '-'))
    return bad("has no number after the sign");
  return b;
}

void add_sampling_options(CLI::App& app, model::SamplerParams& p, const std::string& group) {
  app.add_option("--temp", p.temp, "temperature (<= 0: greedy)")->group(group);
  app.add_option("--top-k", p.top_k, "top-k sampling (0 = disabled)")->group(group);
  app.add_option("--top-p", p.top_p, "top-p sampling (1.0 = disabled)")->group(group);
  app.add_option("--min-p", p.min_p, "min-p sampling (0.0 = disabled)")->group(group);
  app.add_option("--repeat-penalty", p.repeat_penalty, "penalize repeat sequence of tokens (1.0 = disabled)")
      ->group(group);
  app.add_option("--repeat-last-n", p.repeat_last_n,
                 "last n tokens to consider for the penalties (0 = disabled, -1 = ctx_size)")
      ->group(group);
  app.add_option("--presence-penalty", p.presence_penalty, "repeat alpha presence penalty (0.0 = disabled)")
      ->group(group);
  app.add_option("--frequency-penalty", p.frequency_penalty,
                 "repeat alpha frequency penalty (0.0 = disabled)")
      ->group(group);
  app.add_option_function<std::vector<std::string>>(
         "-l,--logit-bias",
         [&p](const std::vector<std::string>& all) {
           for (const std::string& s : all) {
             Result<model::LogitBias> b = parse_logit_bias(s);
             if (!b) throw CLI::ValidationError(b.error().message());
             p.logit_bias.push_back(*b);
           }
         },
         "modifies the likelihood of a token: TOKEN_ID(+/-)BIAS, e.g. 15043+1, 15043-inf (repeatable)")
      ->group(group);
}

Status check_logit_bias(const model::SamplerParams& p, int64_t n_vocab, const std::string& model_file) {
  for (const model::LogitBias& b : p.logit_bias)
    if (b.id >= n_vocab)
      return Error{model_file, "--logit-bias",
                   fmt::format("token id {} is outside the model's vocabulary of {} tokens", b.id, n_vocab)};
  return Status::Ok();
}

void add_grammar_options(CLI::App& app, GrammarOptions& g, const std::string& group) {
  app.add_option("--grammar", g.text, "BNF-like grammar to constrain generations (llama.cpp's GBNF)")
      ->group(group);
  app.add_option("--grammar-file", g.file, "file to read the grammar from")->group(group);
  app.add_option(
         "-j,--json-schema", g.json_schema,
         "JSON schema to constrain generations (https://json-schema.org/), e.g. '{}' for any JSON object")
      ->group(group);
  app.add_option("--json-schema-file", g.json_schema_file, "file containing a JSON schema")
      ->group(group);
}

namespace {

Result<std::string> read_text_file(const std::string& path, const char* flag, const char* what) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  if (!(in && ss << in.rdbuf())) return Error{path, flag, fmt::format("cannot read the {} file", what)};
  if (ss.str().empty()) return Error{path, flag, fmt::format("the {} file is empty", what)};
  return ss.str();
}

}  // namespace

Status load_grammar(const GrammarOptions& g, const tokenizer::Tokenizer& tok, model::SamplerParams& p) {
  const int given = !g.text.empty() + !g.file.empty() + !g.json_schema.empty() + !g.json_schema_file.empty();
  if (given > 1)
    return Error{
        "", "--grammar",
        "--grammar, --grammar-file, --json-schema and --json-schema-file each give a grammar; use one"};
  Result<std::shared_ptr<const model::Grammar>> grammar = std::shared_ptr<const model::Grammar>();
  if (!g.text.empty() || !g.file.empty()) {
    const char* flag = g.file.empty() ? "--grammar" : "--grammar-file";
    Result<std::string> text =
        g.file.empty() ? Result<std::string>(g.text) : read_text_file(g.file, flag, "grammar");
    if (!text) return text.error();
    grammar = model::Grammar::parse(*text);
    if (!grammar)
      return Error{g.file, flag, fmt::format("{}: {}", grammar.error().field, grammar.error().reason)};
  } else if (!g.json_schema.empty() || !g.json_schema_file.empty()) {
    const char* flag = g.json_schema_file.empty() ? "--json-schema" : "--json-schema-file";
    Result<std::string> text = g.json_schema_file.empty()
                                   ? Result<std::string>(g.json_schema)
                                   : read_text_file(g.json_schema_file, flag, "JSON schema");
    if (!text) return text.error();
    const auto schema = nlohmann::ordered_json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (schema.is_discarded()) return Error{g.json_schema_file, flag, "the schema is not valid JSON"};
    grammar = model::parse_json_schema(schema);
    if (!grammar) return Error{g.json_schema_file, flag, grammar.error().reason};
  }
  if (!*grammar) return Status::Ok();
  p.grammar = std::move(*grammar);
  p.grammar_vocab = std::make_shared<const model::GrammarVocab>(tok);
  return Status::Ok();
}

}  // namespace qe::cli
