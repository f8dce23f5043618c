#include "model/batch_engine.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "kernels/kernel_table.h"
#include "model/context.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/run_state.h"
#include "model/sampler.h"
#include "model/stop_strings.h"
#include "model/timing.h"
#include "tokenizer/utf8.h"

namespace qe::model {
namespace {

struct Pending {
  uint64_t id = 0;
  BatchRequest req;
  TokenCallback on_event;
};

// A sequence being served: its request, cache and sampler, and where it stands.
struct Slot {
  bool busy = false;
  uint64_t id = 0;
  // Admission order of its request (from 1; 0: never used): the prompt budget of a step goes to the
  // oldest first, and a new request to the least recently used of equal slots (admit).
  uint64_t order = 0;
  BatchRequest req;
  TokenCallback on_event;
  KvCache kv;
  // The tokens whose K/V the cache holds at positions 0, 1, ... (n_past of them while busy), kept when
  // the request ends: the next request's prompt may start with them.
  std::vector<int32_t> held;
  std::optional<Sampler> sampler;
  tokenizer::Utf8Stream out;
  StopStrings stops;
  int64_t n_past = 0;    // positions in the cache (prompt tokens read = min(n_past, prompt size))
  int64_t n_cached = 0;  // prompt tokens taken from the cache at admission
  int64_t n_gen = 0;     // tokens generated and streamed
  int32_t next = -1;     // the last sampled token, to evaluate at the next step (-1: reading the prompt)
  bool started = false;  // its first prompt chunk ran
  Clock::time_point t_start;
  double prompt_ms = 0;

  int64_t prompt_size() const { return static_cast<int64_t>(req.prompt.size()); }
  int64_t n_prompt() const { return std::min(n_past, prompt_size()); }
};

TokenEvent final_event(StopReason stop) {
  TokenEvent e;
  e.done = true;
  e.stop = stop;
  return e;
}

}  // namespace

struct BatchEngine::Impl {
  const Model* model = nullptr;
  BatchEngineParams params;
  RunState state;
  std::vector<Slot> slots;

  // Shared with the callers of submit / cancel / drain / stats, under mu.
  mutable std::mutex mu;
  std::condition_variable wake;  // the engine thread: work, a cancel, or stop
  std::condition_variable idle;  // drain(): nothing queued or running
  std::deque<Pending> queue;
  std::vector<uint64_t> cancels;
  bool stopping = false, draining = false;
  uint64_t next_id = 1;
  int64_t in_flight = 0;  // accepted requests whose final event is not sent yet
  BatchEngineStats stats;

  // The engine thread's own (a step's batch, reused).
  std::vector<int32_t> tokens;
  std::vector<SeqRun> runs;
  std::vector<size_t> run_slot;
  std::vector<size_t> reading;  // slots reading their prompts, oldest first
  // What a step's sampling found for each run with logits, drawn on the team (see step()).
  struct Draw {
    size_t slot = 0;
    std::span<const float> logits;
    bool finite = true;
    int32_t id = -1;  // -1: no draw (the slot is at max_tokens, or its logits are not finite)
    bool grammar_end = false;  // the grammar allows no token: the request ends as at end of generation
    float logprob = 0;  // when the request asks (TokenEvent)
    std::vector<TokenLogprob> top{};
  };
  std::vector<Draw> draws;
  uint64_t next_order = 1;
  std::thread thread;

  void loop();
  void admit(Pending p);
  bool step();
  void draw(Draw& d);
  void sample(Slot& slot, Draw& d);
  void finish(Slot& slot, StopReason stop, std::string error = {});
  void count_done();
  // Prompt caching (batch_engine.h): not under llama.cpp's numerics.
  bool caching() const { return model->options.numerics != Numerics::llamacpp; }
  int64_t n_busy() const {
    return std::count_if(slots.begin(), slots.end(), [](const Slot& s) { return s.busy; });
  }
};

void BatchEngine::Impl::count_done() {
  std::lock_guard lock(mu);
  ++stats.requests_done;
  stats.slots_busy = n_busy();
  if (--in_flight == 0) idle.notify_all();
}

namespace {

// How many of the prompt's tokens the slot's cache already holds and may give: their common prefix, but
// never the last prompt token (its logits are the request's first draw).
int64_t reusable(const Slot& slot, const BatchRequest& req, bool caching) {
  if (!caching || !req.cache_prompt) return 0;
  const size_t last = std::min(slot.held.size(), req.prompt.size() - 1);
  size_t n = 0;
  while (n < last && slot.held[n] == req.prompt[n]) ++n;
  return static_cast<int64_t>(n);
}

}  // namespace

// Into the free slot that holds the longest prefix of the request's prompt; among equals, the least
// recently used (so the caches of recent conversations last longest). A free slot exists.
void BatchEngine::Impl::admit(Pending p) {
  size_t best = slots.size();
  int64_t best_n = -1;
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].busy) continue;
    const int64_t n = reusable(slots[i], p.req, caching());
    if (n > best_n || (n == best_n && slots[i].order < slots[best].order)) {
      best = i;
      best_n = n;
    }
  }
  QE_CHECK(best < slots.size());
  Slot& slot = slots[best];
  slot.busy = true;
  slot.id = p.id;
  slot.order = next_order++;
  slot.n_cached = best_n;
  slot.held.resize(static_cast<size_t>(slot.n_cached));
  {
    std::lock_guard lock(mu);
    stats.tokens_cached += slot.n_cached;
  }
  slot.req = std::move(p.req);
  slot.on_event = std::move(p.on_event);
  slot.sampler.emplace(slot.req.sampling);
  for (int32_t id : slot.req.prompt) slot.sampler->accept_prompt(id);  // the penalties see the prompt too
  slot.out = tokenizer::Utf8Stream();
  slot.stops = StopStrings(slot.req.stop);
  slot.n_past = slot.n_cached;
  slot.n_gen = 0;
  slot.next = -1;
  slot.started = false;
  slot.prompt_ms = 0;
}

// The last event of a request: the held text (what no stop string took), the counts, and the slot free.
void BatchEngine::Impl::finish(Slot& slot, StopReason stop, std::string error) {
  TokenEvent e = final_event(stop);
  if (!slot.stops.matched()) {
    e.text = slot.stops.push(slot.out.finish());
    if (!slot.stops.matched()) e.text += slot.stops.finish();
  }
  if (slot.stops.matched()) {
    e.stop = StopReason::eog;
    e.stopped_by_string = true;
  }
  e.n_prompt = slot.n_prompt();
  e.n_cached = slot.n_cached;
  e.n_gen = slot.n_gen;
  e.prompt_ms = slot.prompt_ms;
  e.error = std::move(error);
  if (!e.error.empty()) slot.held.clear();  // what a failed step left in the cache is not kept
  // The slot is free before its last event goes out: a client that reads /metrics right after its
  // answer must not still see its own slot busy.
  TokenCallback on_event = std::move(slot.on_event);
  slot.on_event = nullptr;
  slot.busy = false;
  slot.sampler.reset();
  {
    std::lock_guard lock(mu);
    stats.slots_busy = n_busy();
  }
  on_event(e);
  count_done();
}

// The draw of one slot's token from its logits: only its own sampler (and RNG) is touched, so the
// slots' draws may run on any threads in any order and give what they give alone.
void BatchEngine::Impl::draw(Draw& d) {
  Slot& slot = slots[d.slot];
  if (slot.req.max_tokens >= 0 && slot.n_gen >= slot.req.max_tokens) return;
  // A NaN or Inf in a weight's scales reaches the logits (Context::decode says the same).
  d.finite = sampling::first_non_finite(d.logits) == d.logits.size();
  if (!d.finite) return;
  d.id = slot.sampler->sample(d.logits);
  d.grammar_end = d.id < 0;
  if (d.grammar_end || slot.req.n_logprobs < 0) return;
  // log p_i = x_i - max - log(sum exp(x - max)). The sum by the kernels' softmax (a vectorized exp),
  // on a copy: its largest probability is 1 / sum. 49152 logits (Zen 4): ~25 us, where a scalar expf
  // loop took 186.
  thread_local std::vector<float> p;
  p.assign(d.logits.begin(), d.logits.end());
  kernels::kernels(state.numerics, 1).softmax(p.data(), static_cast<int64_t>(p.size()), 1.0f);
  const size_t best = sampling::first_max(d.logits);
  const float log_sum = d.logits[best] - std::log(p[best]);  // max + log(sum)
  d.logprob = d.logits[static_cast<size_t>(d.id)] - log_sum;
  const size_t n_top = std::min(static_cast<size_t>(slot.req.n_logprobs), d.logits.size());
  for (int32_t id : sampling::top_ids(d.logits, n_top))
    d.top.push_back({id, d.logits[static_cast<size_t>(id)] - log_sum});
}

// One token of a slot after its draw, in generate_from()'s order (model/generate.h: sample_token,
// stop_after_token), with the stop strings on the text.
void BatchEngine::Impl::sample(Slot& slot, Draw& d) {
  if (!d.finite)
    return finish(
        slot, StopReason::eog,
        fmt::format("non-finite logits at position {}: the weights or scales of the model hold NaN or Inf",
                    slot.n_past - 1));
  if (d.grammar_end) return finish(slot, StopReason::eog);
  if (d.id < 0) return finish(slot, StopReason::n_predict);
  const SampledToken t = take_token(model->tok, *slot.sampler, d.id, slot.out);
  if (slot.n_gen == 0) slot.prompt_ms = ms_since(slot.t_start);
  if (t.eog) return finish(slot, StopReason::eog);
  ++slot.n_gen;
  {
    std::lock_guard lock(mu);
    ++stats.tokens_generated;
  }
  TokenEvent e;
  e.id = t.id;
  e.text = slot.stops.push(t.text);
  e.n_prompt = slot.n_prompt();
  e.n_cached = slot.n_cached;
  e.n_gen = slot.n_gen;
  e.prompt_ms = slot.prompt_ms;
  e.logprob = d.logprob;
  e.top = std::move(d.top);
  const bool go_on = slot.on_event(e);
  if (slot.stops.matched()) return finish(slot, StopReason::eog);
  if (const std::optional<StopReason> stop =
          stop_after_token(slot.n_gen, slot.req.max_tokens, slot.n_past, params.n_ctx, go_on))
    return finish(slot, *stop);
  slot.next = t.id;
}

// One forward pass: the next token of every generating slot, then prompt chunks (oldest request
// first) up to n_batch tokens; then a token for every slot whose logits came out. False when idle.
bool BatchEngine::Impl::step() {
  tokens.clear();
  runs.clear();
  run_slot.clear();
  for (size_t i = 0; i < slots.size(); ++i) {
    Slot& s = slots[i];
    if (!s.busy || s.next < 0) continue;
    tokens.push_back(s.next);
    runs.push_back({&s.kv, s.n_past, 1, true});
    run_slot.push_back(i);
  }
  const int64_t n_decode = static_cast<int64_t>(tokens.size());
  reading.clear();
  for (size_t i = 0; i < slots.size(); ++i)
    if (slots[i].busy && slots[i].next < 0) reading.push_back(i);
  std::sort(reading.begin(), reading.end(),
            [&](size_t a, size_t b) { return slots[a].order < slots[b].order; });
  const Clock::time_point t0 = Clock::now();
  for (size_t i : reading) {
    Slot& s = slots[i];
    const int64_t budget = params.n_batch - static_cast<int64_t>(tokens.size());
    if (budget <= 0) break;
    const int64_t n = std::min(budget, s.prompt_size() - s.n_past);
    tokens.insert(tokens.end(), s.req.prompt.begin() + s.n_past, s.req.prompt.begin() + s.n_past + n);
    runs.push_back({&s.kv, s.n_past, n, /*logits=*/s.n_past + n == s.prompt_size()});
    run_slot.push_back(i);
    if (!s.started) {
      s.started = true;
      s.t_start = t0;
    }
  }
  if (tokens.empty()) return false;

  const Config& c = model->config;
  Result<std::span<const float>> logits = forward(c, model->weights, state, tokens, runs);
  const double ms = ms_since(t0);
  const int64_t n_prompt = static_cast<int64_t>(tokens.size()) - n_decode;
  {
    std::lock_guard lock(mu);
    stats.tokens_prompt += n_prompt;
    // A mixed step's time is split by its token counts.
    const double share = static_cast<double>(n_prompt) / static_cast<double>(tokens.size());
    stats.prompt_ms += ms * share;
    stats.decode_ms += ms * (1.0 - share);
  }
  if (!logits) {
    for (size_t i : run_slot) finish(slots[i], StopReason::eog, logits.error().message());
    return true;
  }
  draws.clear();
  const size_t n_vocab = static_cast<size_t>(c.n_vocab);
  auto first = tokens.begin();
  for (size_t r = 0; r < runs.size(); ++r) {
    Slot& s = slots[run_slot[r]];
    s.n_past += runs[r].n_tokens;
    s.held.insert(s.held.end(), first, first + runs[r].n_tokens);
    first += runs[r].n_tokens;
    if (runs[r].logits) draws.push_back({run_slot[r], logits->subspan(draws.size() * n_vocab, n_vocab)});
  }
  // A draw scans the vocabulary (greedy) or sorts part of it: with 8 streams, done one after the other,
  // they took 2.7% of a decode step while the other threads waited.
  state.team->run(static_cast<int64_t>(draws.size()), [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) draw(draws[static_cast<size_t>(i)]);
  });
  for (Draw& d : draws) sample(slots[d.slot], d);
  return true;
}

void BatchEngine::Impl::loop() {
  while (true) {
    std::vector<Pending> admitted, dropped;
    std::vector<uint64_t> cancelled;
    bool stop = false;
    {
      std::unique_lock lock(mu);
      wake.wait(lock, [&] { return stopping || !queue.empty() || !cancels.empty() || n_busy() > 0; });
      stop = stopping;
      cancelled.swap(cancels);
      // Cancelled requests still waiting leave the queue; free slots take the next ones.
      for (auto it = queue.begin(); it != queue.end();) {
        if (stop || std::find(cancelled.begin(), cancelled.end(), it->id) != cancelled.end()) {
          dropped.push_back(std::move(*it));
          it = queue.erase(it);
        } else {
          ++it;
        }
      }
      size_t n_free = 0;
      for (const Slot& s : slots) n_free += s.busy ? 0 : 1;
      while (!stop && n_free-- > 0 && !queue.empty()) {
        admitted.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      stats.requests_queued = static_cast<int64_t>(queue.size());
    }
    for (Pending& p : dropped) {
      p.on_event(final_event(StopReason::callback));
      count_done();
    }
    for (Slot& s : slots)
      if (s.busy && (stop || std::find(cancelled.begin(), cancelled.end(), s.id) != cancelled.end()))
        finish(s, StopReason::callback);
    if (stop) break;
    for (Pending& p : admitted) admit(std::move(p));
    step();
    std::lock_guard lock(mu);
    stats.slots_busy = n_busy();
  }
  std::lock_guard lock(mu);
  stats.slots_busy = 0;
}

Result<std::unique_ptr<BatchEngine>> BatchEngine::create(const Model& model,
                                                         const BatchEngineParams& params) {
  const Config& c = model.config;
  auto impl = std::make_unique<Impl>();
  impl->model = &model;
  impl->params = params;
  BatchEngineParams& p = impl->params;
  p.n_ctx = params.n_ctx > 0 ? params.n_ctx : default_n_ctx(c);
  if (params.n_slots < 1)
    return Error{"", "n_slots", fmt::format("{} must be >= 1", params.n_slots), "n_slots"};
  if (params.n_ctx < 0 || p.n_ctx < 1)
    return Error{"", "n_ctx", fmt::format("{} must be >= 1", params.n_ctx), "n_ctx"};
  if (params.n_batch < params.n_slots)
    return Error{"", "n_batch",
                 fmt::format("{} must be at least n_slots ({}): every slot decodes in each step",
                             params.n_batch, params.n_slots),
                 "n_batch"};
  if (params.max_queue < 0)
    return Error{"", "max_queue", fmt::format("{} must be >= 0", params.max_queue), "max_queue"};
  if (model.options.numerics == Numerics::llamacpp && params.n_slots > 1)
    return Error{"", "numerics", "llama.cpp numerics run one sequence per forward pass: use one slot",
                 "numerics"};
  Result<RunState> state =
      RunState::create(c, model.weights.rope_freqs, p.n_batch, p.n_ctx, model.n_threads(),
                       /*all_logits=*/false, p.n_slots);
  if (!state) return state.error();
  impl->state = std::move(*state);
  impl->state.numerics = model.options.numerics;
  impl->slots.resize(static_cast<size_t>(p.n_slots));
  for (Slot& s : impl->slots) {
    Result<KvCache> kv = KvCache::create(c, p.n_ctx, model.options.cache_type, model.options.cache_layout());
    if (!kv) return kv.error();
    s.kv = std::move(*kv);
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->loop(); });
  return std::unique_ptr<BatchEngine>(new BatchEngine(std::move(impl)));
}

BatchEngine::BatchEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

BatchEngine::~BatchEngine() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->thread.join();
}

Result<uint64_t> BatchEngine::submit(BatchRequest request, TokenCallback on_event) {
  Impl& m = *impl_;
  if (request.n_logprobs < -1 || request.n_logprobs > kMaxLogprobs)
    return Error{"", "",
                 fmt::format("{} log-probabilities asked; at most {}", request.n_logprobs, kMaxLogprobs),
                 "n_logprobs"};
  if (Status st = check_prompt(*m.model, request.prompt, m.params.n_ctx); !st) {
    Error e = st.error();
    e.option = "prompt";
    return e;
  }
  uint64_t id = 0;
  {
    std::lock_guard lock(m.mu);
    if (m.draining || m.stopping) return Error{"", "", "the engine is draining: no new requests", "queue"};
    if (static_cast<int64_t>(m.queue.size()) >= m.params.max_queue)
      return Error{"", "", fmt::format("{} requests are already waiting for a slot", m.queue.size()),
                   "queue"};
    id = m.next_id++;
    ++m.in_flight;
    m.queue.push_back({id, std::move(request), std::move(on_event)});
    m.stats.requests_queued = static_cast<int64_t>(m.queue.size());
  }
  m.wake.notify_one();
  return id;
}

void BatchEngine::cancel(uint64_t id) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->cancels.push_back(id);
  }
  impl_->wake.notify_one();
}

void BatchEngine::drain() {
  std::unique_lock lock(impl_->mu);
  impl_->draining = true;
  impl_->idle.wait(lock, [&] { return impl_->in_flight == 0; });
}

BatchEngineStats BatchEngine::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

const BatchEngineParams& BatchEngine::params() const {
  return impl_->params;
}

}  // namespace qe::model
