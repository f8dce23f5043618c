#include "cli/qserve/server.h"

#include <fmt/core.h>
#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "model/chat_session.h"
#include "model/generate.h"

namespace qe::cli::serve {

using nlohmann::json;

struct Server::Counters {
  std::atomic<int64_t> ok{0}, client_error{0}, rejected{0}, cancelled{0};
};

namespace {

// What an event brings: text (of a token, or the text held until the end), and when the request asked
// for log-probabilities, each token's (token.id >= 0), whether its text is out yet or not; `choice`: which
// of the request's n.
struct Piece {
  int choice = 0;
  std::string text;
  model::TokenLogprob token;
  std::vector<model::TokenLogprob> top;
};

}  // namespace

// The events of one request (of its n choices, each an engine request), from the engine thread to the
// request's HTTP thread.
struct Server::Channel {
  Channel(bool with_logprobs, size_t n) : logprobs(with_logprobs), last(n), ended(n, false) {}

  const bool logprobs;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Piece> pieces;
  std::vector<model::TokenEvent> last;  // each choice's final event, once it ended
  std::vector<bool> ended;
  size_t n_ended = 0;
  bool done = false;                   // every choice has ended
  std::vector<uint64_t> ids;           // the engine's, one per choice submitted
  std::atomic<bool> abandoned{false};  // the client went away: the engine callbacks say stop

  bool on_event(int choice, const model::TokenEvent& e) {
    {
      std::lock_guard lock(mu);
      const bool token = logprobs && !e.done;
      if (!e.text.empty() || token)
        pieces.push_back(
            {choice, e.text, token ? model::TokenLogprob{e.id, e.logprob} : model::TokenLogprob{}, e.top});
      if (e.done) {
        last[static_cast<size_t>(choice)] = e;
        ended[static_cast<size_t>(choice)] = true;
        done = ++n_ended == last.size();
      }
    }
    cv.notify_one();
    return !abandoned;
  }
  // The first choice's engine error ("" = none), once done.
  std::string error() const {
    for (const model::TokenEvent& e : last)
      if (!e.error.empty()) return e.error;
    return {};
  }
  bool cancelled() const {
    return std::any_of(last.begin(), last.end(),
                       [](const model::TokenEvent& e) { return e.stop == model::StopReason::callback; });
  }
};

namespace {

constexpr const char* kJson = "application/json; charset=utf-8";

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(error_body(e)), kJson);
}

// A token's log-probability and alternatives as text (special tokens by their names, as "<|im_end|>").
TokenLogprobs named(const tokenizer::Tokenizer& tok, const model::TokenLogprob& t,
                    const std::vector<model::TokenLogprob>& top) {
  TokenLogprobs out{std::string(tok.token_to_piece(t.id)), t.logprob, {}};
  for (const model::TokenLogprob& a : top) out.top.emplace_back(tok.token_to_piece(a.id), a.logprob);
  return out;
}

// A reply that did not end with an end of generation (a length limit, a full cache, a cancel): a tool
// reply is read as cut there.
bool cut_short(const model::TokenEvent& last) {
  return last.stop != model::StopReason::eog;
}

// The finished request's counts and finish reason (a stream's last chunk).
Completion completion_of(const model::TokenEvent& last) {
  const bool length =
      last.stop == model::StopReason::n_predict || last.stop == model::StopReason::context_full;
  return {{}, length ? "length" : "stop", last.n_prompt, last.n_gen, last.n_cached, std::nullopt, {}};
}

// Every choice with its pieces' text and, when asked, their tokens' log-probabilities (a whole response);
// a tool reply read into its calls or answer.
std::vector<Completion> completions_of(const std::vector<model::TokenEvent>& last,
                                       const tokenizer::Tokenizer& tok, const std::deque<Piece>& pieces,
                                       bool logprobs, bool tool_reply) {
  std::vector<Completion> cs;
  for (const model::TokenEvent& e : last) {
    cs.push_back(completion_of(e));
    if (logprobs) cs.back().logprobs.emplace();
  }
  for (const Piece& p : pieces) {
    Completion& c = cs[static_cast<size_t>(p.choice)];
    c.text += p.text;
    if (p.token.id >= 0) c.logprobs->push_back(named(tok, p.token, p.top));
  }
  if (tool_reply)
    for (size_t i = 0; i < cs.size(); ++i) read_tool_reply(cs[i], cut_short(last[i]));
  return cs;
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool same_key(std::string_view a, std::string_view b) {
  // Constant time in the key's content: a wrong key's length is all a timing reveals.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

Server::Server(const model::Model& model, model::BatchEngine& engine, tokenizer::ChatTemplate tmpl,
               ServerOptions options)
    : model_(model),
      engine_(engine),
      tmpl_(tmpl),
      options_(std::move(options)),
      http_(std::make_unique<httplib::Server>()),
      counters_(std::make_unique<Counters>()),
      eog_(model::eog_ids(model)) {
  const model::BatchEngineParams& p = engine_.params();
  // Every waiting and running request holds an HTTP thread; the spare ones keep /health and errors
  // answered when slots and queue are full.
  const size_t n_threads = options_.threads_http > 0 ? static_cast<size_t>(options_.threads_http)
                                                     : static_cast<size_t>(p.n_slots + p.max_queue + 32);
  http_->new_task_queue = [n_threads] { return new httplib::ThreadPool(n_threads); };
  http_->set_payload_max_length(options_.max_body);
  http_->set_read_timeout(options_.timeout_s, 0);
  http_->set_write_timeout(options_.timeout_s, 0);
  http_->set_keep_alive_timeout(5);
  http_->set_socket_options([this](int sock) {
    httplib::default_socket_options(sock);
    listen_socket_ = sock;  // the last socket made is the one bound
  });
  routes();
}

Server::~Server() = default;

Status Server::bind() {
  const std::string where = fmt::format("{}:{}", options_.host, options_.port);
  if (!http_->bind_to_port(options_.host, options_.port))
    return Error{"", where, "cannot listen there (in use, or not an address of this machine)"};
  // httplib listens with a backlog of 5 connections: a burst of more clients at once (8 streams opened
  // together) overflowed it, and the kernel dropped their handshakes, which the clients' TCP resent
  // after a second (measured: 3 rounds in 10 of 8 connections opened at once waited 1.0 s for their
  // first byte). listen() again on the bound socket raises the backlog to the system's limit.
  if (listen_socket_ < 0 || ::listen(listen_socket_, SOMAXCONN) != 0)
    return Error{"", where, "cannot raise the listen backlog of the bound socket"};
  return {};
}

void Server::listen() {
  http_->listen_after_bind();
}

void Server::wait_streams() const {
  while (streams_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void Server::stop() {
  http_->stop();
}

void Server::routes() {
  httplib::Server& s = *http_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options_.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 && same_key(std::string_view(auth).substr(7), options_.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, {401, "invalid or missing API key (Authorization: Bearer KEY)", "", "invalid_api_key",
                     "invalid_request_error"});
    return httplib::Server::HandlerResponse::Handled;
  });
  // httplib's own refusals (413 for a body over the cap, 404, 400) come with an empty body.
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string reason = res.status == 413   ? "the request body is larger than the server accepts"
                               : res.status == 404 ? "no such endpoint"
                                                   : "the server could not read the request";
    send_error(res, {res.status, reason, "", "", "invalid_request_error"});
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, {500, what, "", "", "server_error"});
  });

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = draining_ ? 503 : 200;
    res.set_content(draining_ ? R"({"status":"draining"})" : R"({"status":"ok"})", kJson);
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics(), "text/plain; version=0.0.4");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const json j = {
        {"object", "list"},
        {"data",
         json::array(
             {{{"id", options_.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "qengine"}}})}};
    res.set_content(dump(j), kJson);
  });

  // llama-server's token tools: what a prompt's text is in tokens (logit_bias wants ids), and back.
  auto tokenize = [this](const httplib::Request& req, httplib::Response& res) {
    Parsed<TokenizeRequest> p = parse_tokenize(req.body);
    if (!p.request) return send_error(res, p.error);
    const std::vector<int32_t> ids =
        model_.tok.tokenize(p.request->content, p.request->add_special, /*parse_special=*/true);
    std::vector<std::string_view> pieces;
    if (p.request->with_pieces)
      for (int32_t id : ids) pieces.push_back(model_.tok.token_to_piece(id));
    res.set_content(dump(tokenize_body(ids, p.request->with_pieces ? &pieces : nullptr)), kJson);
  };
  auto detokenize = [this](const httplib::Request& req, httplib::Response& res) {
    Parsed<std::vector<int32_t>> p = parse_detokenize(req.body, model_.config.n_vocab);
    if (!p.request) return send_error(res, p.error);
    const json j = {{"content", model_.tok.detokenize(*p.request, false, /*unparse_special=*/true)}};
    res.set_content(dump(j), kJson);
  };
  // llama-server's POST /apply-template: the prompt a chat request's messages (and tools) make, as text.
  s.Post("/apply-template", [this](const httplib::Request& req, httplib::Response& res) {
    ParseResult p = parse_request(req.body, Endpoint::chat, options_.limits);
    if (!p.request) return send_error(res, p.error);
    const json j = {
        {"prompt", tokenizer::format_chat(tmpl_, p.request->messages, /*add_assistant_prompt=*/true)}};
    res.set_content(dump(j), kJson);
  });
  s.Post("/tokenize", tokenize);
  s.Post("/detokenize", detokenize);

  auto complete = [this](Endpoint endpoint) {
    return [this, endpoint](const httplib::Request& req, httplib::Response& res) {
      if (draining_) {
        ++counters_->rejected;
        res.set_header("Retry-After", "1");
        return send_error(res, {503, "the server is shutting down", "", "shutting_down", "server_error"});
      }
      ParseResult parsed = parse_request(req.body, endpoint, options_.limits);
      if (!parsed.request) {
        ++counters_->client_error;
        return send_error(res, parsed.error);
      }
      ParsedRequest& r = *parsed.request;
      model::BatchRequest br;
      br.prompt = endpoint == Endpoint::chat ? model::tokenize_chat(model_, tmpl_, r.messages)
                  : r.prompt_ids.empty()     ? model::tokenize_prompt(model_, r.prompt)
                                             : std::move(r.prompt_ids);
      br.max_tokens = r.max_tokens;
      br.sampling = r.sampling;
      if (r.ignore_eos) br.sampling.ban(eog_);
      if (!r.seed_given) br.sampling.seed = std::random_device{}();
      br.stop = std::move(r.stop);
      br.cache_prompt = r.cache_prompt;
      br.n_logprobs = r.n_logprobs;

      // n choices: n engine requests (seed + i; drawn apart when not given), events into one channel.
      const size_t n = static_cast<size_t>(r.n);
      auto ch = std::make_shared<Channel>(r.n_logprobs >= 0, n);
      for (size_t i = 0; i < n; ++i) {
        model::BatchRequest choice = br;
        choice.sampling.seed = r.seed_given ? br.sampling.seed + static_cast<uint32_t>(i)
                               : i == 0     ? br.sampling.seed
                                            : std::random_device{}();
        const int index = static_cast<int>(i);
        Result<uint64_t> id = engine_.submit(
            std::move(choice), [ch, index](const model::TokenEvent& e) { return ch->on_event(index, e); });
        if (id) {
          std::lock_guard lock(ch->mu);
          ch->ids.push_back(*id);
          continue;
        }
        ch->abandoned = true;  // the choices already submitted end at the next step
        for (uint64_t earlier : ch->ids) engine_.cancel(earlier);
        const Error& e = id.error();
        if (e.option == "queue") {
          ++counters_->rejected;
          res.set_header("Retry-After", "1");
          return send_error(res, {503, "every slot is busy and the queue is full; retry later", "",
                                  "queue_full", "server_error"});
        }
        ++counters_->client_error;
        const char* param = endpoint == Endpoint::chat ? "messages" : "prompt";
        return send_error(res, {400, e.reason, param, e.option == "prompt" ? "context_length_exceeded" : "",
                                "invalid_request_error"});
      }
      const bool tool_reply = r.tool_reply;
      const ResponseHeader head{
          fmt::format("{}-{}", endpoint == Endpoint::chat ? "chatcmpl" : "cmpl", next_id_++), unix_time(),
          options_.model_name};
      if (!r.stream) {
        // Done within a second: one ordinary response. Longer: the body is sent chunked, a space (JSON's
        // leading whitespace) each second while the engine works, and at each token the socket is
        // looked at (is_writable peeks, sends nothing), so that a client that has gone is noticed by the
        // next step and its slot freed, as for a stream; an engine error then comes as the error object
        // in a 200 response.
        {
          std::unique_lock lock(ch->mu);
          if (ch->cv.wait_for(lock, std::chrono::seconds(1), [&] { return ch->done; })) {
            if (const std::string error = ch->error(); !error.empty())
              return send_error(res, {500, error, "", "", "server_error"});
            ++(ch->cancelled() ? counters_->cancelled : counters_->ok);
            const std::vector<Completion> cs =
                completions_of(ch->last, model_.tok, ch->pieces, ch->logprobs, tool_reply);
            res.set_content(dump(response_body(endpoint, head, cs)), kJson);
            return;
          }
        }
        ++streams_;
        res.set_chunked_content_provider(
            kJson,
            [this, ch, head, endpoint, tool_reply, spaced = std::chrono::steady_clock::time_point{}](
                size_t, httplib::DataSink& sink) mutable {
              {
                std::unique_lock lock(ch->mu);
                const size_t seen = ch->pieces.size();
                ch->cv.wait_for(lock, std::chrono::seconds(1),
                                [&] { return ch->done || ch->pieces.size() != seen; });
                if (!ch->done) {
                  lock.unlock();
                  if (!sink.is_writable()) return false;  // the client has gone: the releaser cancels
                  const auto now = std::chrono::steady_clock::now();
                  if (now - spaced < std::chrono::seconds(1)) return true;  // called again at once
                  spaced = now;
                  return sink.write(" ", 1);
                }
              }
              // Done: the engine writes the channel no more.
              const std::string error = ch->error();
              const std::string body =
                  error.empty() ? dump(response_body(endpoint, head,
                                                     completions_of(ch->last, model_.tok, ch->pieces,
                                                                    ch->logprobs, tool_reply)))
                                : dump(error_body({500, error, "", "", "server_error"}));
              if (!sink.write(body.data(), body.size())) return false;
              ++(ch->cancelled() ? counters_->cancelled : counters_->ok);
              sink.done();
              return true;
            },
            [this, ch](bool) { release(*ch); });
        return;
      }
      // A stream: each choice's chunks carry its index; a choice's last chunk comes as it ends.
      struct StreamState {
        bool first = true;
        std::vector<int64_t> offset;  // bytes of token text sent per choice (completions' text_offset)
        std::vector<ToolReplyStream> tools;                   // a tool reply's reading per choice
        std::vector<bool> finished;                           // choices whose last chunk is sent
        std::vector<Completion> ends;                         // their counts (the usage at the end)
        bool error = false;                                   // a choice ended with an engine error
      };
      auto st = std::make_shared<StreamState>();
      st->offset.assign(n, 0);
      st->finished.assign(n, false);
      st->ends.resize(n);
      if (tool_reply) st->tools.resize(n);
      res.set_header("Cache-Control", "no-cache");
      ++streams_;
      res.set_chunked_content_provider(
          "text/event-stream",
          [this, ch, head, endpoint, st](size_t, httplib::DataSink& sink) {
            std::deque<Piece> pieces;
            std::vector<bool> ended;
            {
              std::unique_lock lock(ch->mu);
              // Wakes once a second while the request waits or reads its prompt, to notice a client
              // that has gone.
              ch->cv.wait_for(lock, std::chrono::seconds(1), [&] { return ch->done || !ch->pieces.empty(); });
              pieces.swap(ch->pieces);
              ended = ch->ended;
            }
            if (!sink.is_writable()) return false;  // the releaser cancels the request
            std::string out;
            const size_t n_choices = ended.size();
            if (st->first && endpoint == Endpoint::chat)
              for (size_t i = 0; i < n_choices; ++i)
                out += sse_event(stream_chunk(endpoint, head, "", true, nullptr, static_cast<int>(i)));
            st->first = false;
            // A chunk per piece: its text, and its token's log-probabilities when asked (a token whose
            // text is held back comes with empty text).
            for (const Piece& p : pieces) {
              const size_t c = static_cast<size_t>(p.choice);
              json logprobs = nullptr;
              if (p.token.id >= 0) {
                const TokenLogprobs t = named(model_.tok, p.token, p.top);
                logprobs = logprobs_object(endpoint, {t}, st->offset[c]);
                st->offset[c] += static_cast<int64_t>(t.token.size());
              }
              if (st->tools.empty()) {
                out += sse_event(stream_chunk(endpoint, head, p.text, false, logprobs, p.choice));
                continue;
              }
              // A tool reply: what the piece adds to the answer or the calls; its log-probabilities go
              // with the first delta, or alone.
              std::vector<json> deltas = st->tools[c].add(p.text);
              if (deltas.empty() && !logprobs.is_null()) deltas.push_back(json::object());
              for (json& d : deltas) {
                out += sse_event(delta_chunk(head, std::move(d), logprobs, p.choice));
                logprobs = nullptr;
              }
            }
            // The choices that ended: their last chunks (the engine writes their events no more).
            bool done = true;  // every choice ended and its last chunk is out
            for (size_t i = 0; i < n_choices; ++i) {
              if (!ended[i] || st->finished[i]) {
                done = done && st->finished[i];
                continue;
              }
              st->finished[i] = true;
              const model::TokenEvent& last = ch->last[i];
              if (!last.error.empty()) {
                out += sse_event(error_body({500, last.error, "", "", "server_error"}));
                st->error = true;
                continue;
              }
              Completion& c = st->ends[i] = completion_of(last);
              const int index = static_cast<int>(i);
              if (!st->tools.empty())
                for (json& d : st->tools[i].finish(c, cut_short(last)))
                  out += sse_event(delta_chunk(head, std::move(d), nullptr, index));
              out += sse_event(stream_final_chunk(endpoint, head, c, index, n_choices == 1));
            }
            if (done && n_choices > 1 && !st->error)
              out += sse_event(stream_usage_chunk(endpoint, head, st->ends));
            if (done) out += "data: [DONE]\n\n";
            if (!out.empty() && !sink.write(out.data(), out.size())) return false;
            if (done) {
              ++counters_->ok;
              sink.done();
            }
            return true;
          },
          [this, ch](bool) { release(*ch); });
    };
  };
  s.Post("/v1/chat/completions", complete(Endpoint::chat));
  s.Post("/chat/completions", complete(Endpoint::chat));
  s.Post("/v1/completions", complete(Endpoint::completion));
  s.Post("/completions", complete(Endpoint::completion));
}

// A chunked response has ended, sent or not: a request still running lost its client (gone, or the write
// timed out), so its slot is freed at the engine's next step.
void Server::release(Channel& ch) {
  std::lock_guard lock(ch.mu);
  --streams_;
  if (ch.done) return;
  ch.abandoned = true;
  ++counters_->cancelled;
  for (size_t i = 0; i < ch.ids.size(); ++i)
    if (!ch.ended[i]) engine_.cancel(ch.ids[i]);
}

std::string Server::metrics() const {
  const model::BatchEngineStats st = engine_.stats();
  const auto rate = [](int64_t n, double ms) { return ms > 0 ? 1e3 * static_cast<double>(n) / ms : 0.0; };
  std::string out;
  const auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
  };
  out +=
      "# HELP qserve_requests_total Completion requests by outcome.\n# TYPE qserve_requests_total counter\n";
  out += fmt::format("qserve_requests_total{{outcome=\"ok\"}} {}\n", counters_->ok.load());
  out += fmt::format("qserve_requests_total{{outcome=\"invalid\"}} {}\n", counters_->client_error.load());
  out += fmt::format("qserve_requests_total{{outcome=\"rejected\"}} {}\n", counters_->rejected.load());
  out += fmt::format("qserve_requests_total{{outcome=\"cancelled\"}} {}\n", counters_->cancelled.load());
  metric("qserve_prompt_tokens_total", "counter", "Prompt tokens evaluated.", st.tokens_prompt);
  metric("qserve_prompt_tokens_cached_total", "counter",
         "Prompt tokens whose K/V a slot's cache held from an earlier request (not evaluated).",
         st.tokens_cached);
  metric("qserve_tokens_generated_total", "counter", "Tokens generated.", st.tokens_generated);
  metric("qserve_prompt_tokens_per_second", "gauge", "Prompt tokens per second of engine prompt time.",
         rate(st.tokens_prompt, st.prompt_ms));
  metric("qserve_decode_tokens_per_second", "gauge", "Generated tokens per second of engine decode time.",
         rate(st.tokens_generated, st.decode_ms));
  metric("qserve_requests_queued", "gauge", "Requests waiting for a slot.", st.requests_queued);
  metric("qserve_slots_busy", "gauge", "Slots decoding or reading a prompt.", st.slots_busy);
  metric("qserve_slots_total", "gauge", "Slots (-np).", engine_.params().n_slots);
  return out;
}

}  // namespace qe::cli::serve
