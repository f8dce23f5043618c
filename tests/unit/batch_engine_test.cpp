// Continuous batching (model/batch_engine.h) on the tiny llama models of tiny_model.h: the batched
// forward pass gives every sequence the logits it gets alone, bit for bit, whatever shares its steps
// and on 1 or 2 threads; the engine's requests give model::generate()'s tokens and text; cancel, a full
// queue, stop strings, max_tokens and drain.
#include "model/batch_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "model/context.h"
#include "model/forward.h"
#include "model/generate.h"
#include "model/grammar.h"
#include "model/model.h"
#include "model/stop_strings.h"
#include "tiny_model.h"

namespace qe::model {
namespace {

using testing::byte_ids;

std::unique_ptr<Model> open_tiny(int n_threads, GgmlType matrices = GgmlType::F32,
                                 Numerics numerics = Numerics::fast) {
  ModelOptions o;
  o.n_threads = n_threads;
  o.numerics = numerics;
  testing::TinySpec spec;
  spec.matrix_type = matrices;
  return testing::open_tiny_model("batch_engine", spec, o);
}

const char* const kPrompts[] = {
    "the quick brown fox jumps over the lazy dog",
    "hi",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud",
    "0123456789",
    "a",
    "Pack my box with five dozen liquor jugs.",
};

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// One sequence alone through Context::eval: the logits after its prompt, then after each of its greedy
// tokens evaluated one at a time.
struct Alone {
  std::vector<int32_t> prompt, tokens;  // tokens[i]: the argmax of logits[i]
  std::vector<std::vector<float>> logits;
};

Alone run_alone(const Model& m, const std::vector<int32_t>& prompt, int n_decode) {
  Alone a;
  a.prompt = prompt;
  Result<Context> ctx = Context::create(m, {256, 512, false});
  EXPECT_TRUE(ctx.ok());
  Result<std::span<const float>> l = ctx->eval(prompt);
  EXPECT_TRUE(l.ok());
  for (int i = 0;; ++i) {
    a.logits.emplace_back(l->begin(), l->end());
    a.tokens.push_back(argmax(*l));
    if (i == n_decode) break;
    l = ctx->eval(std::span<const int32_t>(&a.tokens.back(), 1));
    EXPECT_TRUE(l.ok());
  }
  return a;
}

// The sequences of `alone` through the batched forward pass together: each step takes one token of
// every sequence past its prompt and prompt chunks of random sizes (seeded) of the others, so steps mix
// prompt chunks, whole prompts and decode tokens; every logits row must equal the one alone.
void expect_batched_equals_alone(const Model& m, const std::vector<Alone>& alone, uint32_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", threads " + std::to_string(m.n_threads()));
  const Config& c = m.config;
  const int64_t n_seqs = static_cast<int64_t>(alone.size());
  Result<RunState> s = RunState::create(c, m.weights.rope_freqs, 64, 256, m.n_threads(), false, n_seqs);
  ASSERT_TRUE(s.ok());
  std::vector<KvCache> caches;
  for (int64_t i = 0; i < n_seqs; ++i) caches.push_back(*KvCache::create(c, 256, m.options.cache_type));
  std::vector<int64_t> n_past(alone.size(), 0), n_out(alone.size(), 0);
  std::mt19937 rng(seed);
  for (int step = 0;; ++step) {
    std::vector<int32_t> tokens;
    std::vector<SeqRun> runs;
    std::vector<size_t> who;
    for (size_t i = 0; i < alone.size(); ++i) {
      const Alone& a = alone[i];
      const int64_t p = static_cast<int64_t>(a.prompt.size());
      if (n_out[i] == static_cast<int64_t>(a.logits.size())) continue;  // done
      if (n_past[i] >= p) {  // decoding: the token it sampled alone
        tokens.push_back(a.tokens[static_cast<size_t>(n_out[i] - 1)]);
        runs.push_back({&caches[i], n_past[i], 1, true});
      } else {  // a chunk of 1..17 prompt tokens
        const int64_t n = std::min<int64_t>(p - n_past[i], 1 + rng() % 17);
        tokens.insert(tokens.end(), a.prompt.begin() + n_past[i], a.prompt.begin() + n_past[i] + n);
        runs.push_back({&caches[i], n_past[i], n, n_past[i] + n == p});
      }
      who.push_back(i);
    }
    if (runs.empty()) break;
    Result<std::span<const float>> l = forward(c, m.weights, *s, tokens, runs);
    ASSERT_TRUE(l.ok()) << l.error().message();
    size_t row = 0;
    for (size_t r = 0; r < runs.size(); ++r) {
      const size_t i = who[r];
      n_past[i] += runs[r].n_tokens;
      if (!runs[r].logits) continue;
      const std::vector<float>& want = alone[i].logits[static_cast<size_t>(n_out[i])];
      ASSERT_EQ(0, std::memcmp(l->data() + row * want.size(), want.data(), want.size() * sizeof(float)))
          << "sequence " << i << ", logits " << n_out[i] << " (step " << step << ", " << runs.size()
          << " runs)";
      ++row;
      ++n_out[i];
    }
    ASSERT_EQ(row * static_cast<size_t>(c.n_vocab), l->size());
  }
}

// f32 matrices, and q4_1 / q8_0 ones (x16, whose int8 activations attention makes itself when it takes
// every decode token of a step whole: attention_owns_token, with six sequences on 1 or 2 threads).
TEST(BatchForward, EverySequenceGetsItsLogitsAloneBitForBit) {
  for (const GgmlType matrices : {GgmlType::F32, GgmlType::Q4_1, GgmlType::Q8_0}) {
    SCOPED_TRACE(ggml_type_name(matrices));
    std::unique_ptr<Model> one = open_tiny(1, matrices), two = open_tiny(2, matrices);
    ASSERT_TRUE(one && two);
    std::vector<Alone> alone;
    for (const char* p : kPrompts) alone.push_back(run_alone(*one, byte_ids(p), 12));
    // The alone runs themselves do not depend on the thread count.
    for (size_t i = 0; i < alone.size(); ++i) {
      const Alone a2 = run_alone(*two, alone[i].prompt, 12);
      for (size_t j = 0; j < a2.logits.size(); ++j)
        ASSERT_EQ(0, std::memcmp(a2.logits[j].data(), alone[i].logits[j].data(),
                                 a2.logits[j].size() * sizeof(float)))
            << "sequence " << i << " logits " << j;
    }
    for (uint32_t seed : {1u, 2u, 3u}) {
      expect_batched_equals_alone(*one, alone, seed);
      expect_batched_equals_alone(*two, alone, seed);
    }
    // Fewer sequences than the state allows, and one alone in a batch state.
    expect_batched_equals_alone(*two, {alone[2], alone[4]}, 4);
  }
}

TEST(BatchForward, RefusesBadRuns) {
  std::unique_ptr<Model> m = open_tiny(1);
  ASSERT_TRUE(m);
  Result<RunState> s = RunState::create(m->config, nullptr, 8, 16, 1, false, 2);
  KvCache a = *KvCache::create(m->config, 16, GgmlType::F16),
          b = *KvCache::create(m->config, 16, GgmlType::F16);
  const std::vector<int32_t> tokens = byte_ids("abc");
  const SeqRun three[] = {{&a, 0, 1, true}, {&b, 0, 1, true}, {&a, 1, 1, true}};
  EXPECT_FALSE(forward(m->config, m->weights, *s, tokens, three).ok()) << "more runs than n_seqs";
  const SeqRun past[] = {{&a, 0, 1, true}, {&b, 15, 2, true}};
  Result<std::span<const float>> r = forward(m->config, m->weights, *s, tokens, past);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("15..16"), std::string::npos) << r.error().message();
  const SeqRun shared[] = {{&a, 0, 1, true}, {&a, 1, 2, true}};
  r = forward(m->config, m->weights, *s, tokens, shared);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("share a KV cache"), std::string::npos) << r.error().message();
  const SeqRun none[] = {{&a, 0, 1, false}, {&b, 0, 2, false}};
  r = forward(m->config, m->weights, *s, tokens, none);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty()) << "no run asked for logits";
  // A cache laid out for llama.cpp's numerics (rows) is refused by this engine's, not misread.
  KvCache rows = *KvCache::create(m->config, 16, GgmlType::F16, KvLayout::rows);
  const SeqRun wrong[] = {{&a, 0, 1, true}, {&rows, 0, 2, true}};
  r = forward(m->config, m->weights, *s, tokens, wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("tiles layout"), std::string::npos) << r.error().message();
}

TEST(StopStrings, HoldsBackOnlyWhatCanStillMatch) {
  StopStrings s({"abc", "", "xyz"});
  EXPECT_EQ(s.push("hello a"), "hello ");
  EXPECT_EQ(s.push("b"), "");
  EXPECT_EQ(s.push("d x"), "abd ");
  EXPECT_EQ(s.push("yz and more"), "");
  EXPECT_TRUE(s.matched());
  EXPECT_EQ(s.push("later"), "");

  StopStrings t({"ab", "b"});
  EXPECT_EQ(t.push("xab"), "x") << "the earliest match wins";
  StopStrings u({"end"});
  EXPECT_EQ(u.push("the en"), "the ");
  EXPECT_EQ(u.finish(), "en") << "held text is released at the end";
  EXPECT_FALSE(u.matched());
  StopStrings none;
  EXPECT_EQ(none.push("abc"), "abc");
}

// ---- BatchEngine

// A request's events, collected (on the engine thread; read after its final event).
struct Collected {
  std::mutex mu;
  std::vector<int32_t> ids;
  std::vector<TokenEvent> tokens;  // the token events whole (their logprobs)
  std::string text;
  std::vector<TokenEvent> finals;
  std::promise<void> done;
  int cancel_after = -1;  // return false after this many tokens

  TokenCallback callback() {
    return [this](const TokenEvent& e) {
      std::lock_guard lock(mu);
      text += e.text;
      if (e.done) {
        finals.push_back(e);
        done.set_value();
        return true;
      }
      ids.push_back(e.id);
      tokens.push_back(e);
      return cancel_after < 0 || static_cast<int>(ids.size()) < cancel_after;
    };
  }

  // callback(), whose first token waits for `go` (after setting `started`, when given): the engine's
  // thread, and so its slots, are held until the test lets them go.
  TokenCallback held_callback(std::shared_future<void> go, std::promise<void>* started = nullptr) {
    return [inner = callback(), go, started, first = true](const TokenEvent& e) mutable {
      if (first) {
        first = false;
        if (started) started->set_value();
        go.wait();
      }
      return inner(e);
    };
  }
};

struct Reference {
  std::vector<int32_t> ids;
  std::string text;
  StopReason stop = StopReason::eog;
};

Reference generate_alone(const Model& m, const BatchRequest& req, int64_t n_ctx) {
  Result<Context> ctx = Context::create(m, {n_ctx, 512, false});
  EXPECT_TRUE(ctx.ok());
  Sampler sampler(req.sampling);
  Reference ref;
  Result<GenerateStats> r =
      generate(*ctx, sampler, req.prompt, {req.max_tokens, false}, [&](const StreamChunk& ch) {
        ref.text += ch.text;
        if (!ch.stop) ref.ids.push_back(ch.id);
        return true;
      });
  EXPECT_TRUE(r.ok());
  ref.stop = r->stop;
  return ref;
}

std::vector<BatchRequest> mixed_requests() {
  std::vector<BatchRequest> reqs;
  for (size_t i = 0; i < std::size(kPrompts); ++i) {
    BatchRequest r;
    r.prompt = byte_ids(kPrompts[i]);
    r.max_tokens = static_cast<int32_t>(10 + 7 * i);
    if (i % 2 == 0) {
      r.sampling.temp = 0;  // greedy
    } else {
      r.sampling.temp = 0.8f;
      r.sampling.seed = static_cast<uint32_t>(100 + i);
    }
    if (i == 3) r.sampling.repeat_penalty = 1.3f;  // sees the prompt
    if (i == 1) {                                  // sampled, with OpenAI's penalties and biases
      r.sampling.frequency_penalty = 0.4f;
      r.sampling.presence_penalty = 0.6f;
      r.sampling.logit_bias = {{'e', 1.5f}, {' ', -2.0f}};
    }
    reqs.push_back(r);
  }
  reqs[4].max_tokens = -1;  // until end of generation or a full slot: the EOS (2) banned, a full slot
  reqs[4].sampling.ban(std::vector<int32_t>{2});
  return reqs;
}

TEST(BatchEngine, RequestsGiveWhatGenerateGivesAlone) {
  for (int threads : {1, 2}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    std::unique_ptr<Model> m = open_tiny(threads);
    ASSERT_TRUE(m);
    std::vector<BatchRequest> reqs = mixed_requests();
    // Two under a grammar (greedy and sampled): the grammar's state is the slot's own.
    const auto vocab = std::make_shared<const GrammarVocab>(m->tok);
    for (size_t i : {2, 5}) {
      Result<std::shared_ptr<const Grammar>> g = Grammar::parse("root ::= [a-e]{2,6} (\" \" [f-z]+)+ \".\"");
      ASSERT_TRUE(g.ok());
      reqs[i].sampling.grammar = *g;
      reqs[i].sampling.grammar_vocab = vocab;
    }
    // 3 slots for 6 requests (some wait), steps of at most 16 tokens (prompts in chunks), 192 positions
    // (the unbounded request fills its slot). The callbacks' data outlives the engine.
    std::vector<std::unique_ptr<Collected>> got;
    Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {3, 192, 16, 64});
    ASSERT_TRUE(engine.ok()) << engine.error().message();
    for (const BatchRequest& r : reqs) {
      got.push_back(std::make_unique<Collected>());
      ASSERT_TRUE((*engine)->submit(r, got.back()->callback()).ok());
    }
    (*engine)->drain();
    for (size_t i = 0; i < reqs.size(); ++i) {
      const Reference want = generate_alone(*m, reqs[i], 192);
      Collected& g = *got[i];
      ASSERT_EQ(g.finals.size(), 1u) << "request " << i;
      EXPECT_EQ(g.ids, want.ids) << "request " << i;
      EXPECT_EQ(g.text, want.text) << "request " << i;
      EXPECT_EQ(g.finals[0].stop, want.stop) << "request " << i;
      EXPECT_EQ(g.finals[0].n_gen, static_cast<int64_t>(want.ids.size()));
      EXPECT_EQ(g.finals[0].n_prompt, static_cast<int64_t>(reqs[i].prompt.size()));
      EXPECT_TRUE(g.finals[0].error.empty());
    }
    EXPECT_EQ(got[4]->finals[0].stop, StopReason::context_full);
    for (size_t i : {2, 5})
      EXPECT_TRUE(std::regex_match(got[i]->text, std::regex("[a-e]{2,6}( [f-z]+)*( [f-z]*)?\\.?")))
          << got[i]->text;
    const BatchEngineStats st = (*engine)->stats();
    EXPECT_EQ(st.requests_done, 6);
    EXPECT_EQ(st.slots_busy, 0);
    EXPECT_EQ(st.requests_queued, 0);
    int64_t n_prompt = 0, n_cached = 0;
    for (const BatchRequest& r : reqs) n_prompt += static_cast<int64_t>(r.prompt.size());
    for (const auto& g : got) n_cached += g->finals[0].n_cached;
    EXPECT_EQ(st.tokens_prompt + st.tokens_cached, n_prompt);
    EXPECT_EQ(st.tokens_cached, n_cached);
  }
}

TEST(BatchEngine, CancelFreesTheSlot) {
  std::unique_ptr<Model> m = open_tiny(1);
  ASSERT_TRUE(m);
  Collected a, b, c;
  Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {1, 128, 32, 8});
  ASSERT_TRUE(engine.ok());
  BatchRequest req;
  req.prompt = byte_ids(kPrompts[0]);
  req.sampling.temp = 0;
  // By the callback's false after 3 tokens; the next request takes the one slot. a's first token waits
  // until c is cancelled: without that, a preempted test thread let a, b and then all of c run first.
  a.cancel_after = 3;
  std::promise<void> release;
  ASSERT_TRUE((*engine)->submit(req, a.held_callback(release.get_future().share())).ok());
  req.max_tokens = 4;
  ASSERT_TRUE((*engine)->submit(req, b.callback()).ok());
  // By cancel(id) while waiting in the queue (the one slot is a's until release).
  req.max_tokens = -1;
  Result<uint64_t> id_c = (*engine)->submit(req, c.callback());
  ASSERT_TRUE(id_c.ok());
  (*engine)->cancel(*id_c);
  release.set_value();
  (*engine)->drain();
  ASSERT_EQ(a.finals.size(), 1u);
  EXPECT_EQ(a.finals[0].stop, StopReason::callback);
  EXPECT_EQ(a.ids.size(), 3u);
  ASSERT_EQ(b.finals.size(), 1u);
  EXPECT_EQ(b.finals[0].stop, StopReason::n_predict);
  EXPECT_EQ(b.ids.size(), 4u);
  EXPECT_EQ(std::vector<int32_t>(b.ids.begin(), b.ids.begin() + 3), a.ids) << "greedy, the same prompt";
  ASSERT_EQ(c.finals.size(), 1u);
  EXPECT_EQ(c.finals[0].stop, StopReason::callback);
  EXPECT_TRUE(c.ids.empty());

  // cancel(id) of a running request, from its own callback.
  Collected d;
  uint64_t id_d = 0;
  std::promise<uint64_t> id_known;
  std::shared_future<uint64_t> id_future = id_known.get_future().share();
  Result<std::unique_ptr<BatchEngine>> e2 = BatchEngine::create(*m, {2, 128, 32, 8});
  ASSERT_TRUE(e2.ok());
  TokenCallback inner = d.callback();
  Result<uint64_t> rd = (*e2)->submit(req, [&, inner](const TokenEvent& e) {
    if (!e.done && e.n_gen == 2) (*e2)->cancel(id_future.get());
    return inner(e);
  });
  ASSERT_TRUE(rd.ok());
  id_d = *rd;
  id_known.set_value(id_d);
  (*e2)->drain();
  ASSERT_EQ(d.finals.size(), 1u);
  EXPECT_EQ(d.finals[0].stop, StopReason::callback);
  EXPECT_EQ(d.ids.size(), 2u) << "ends before the next step";
}

TEST(BatchEngine, RefusesWhenTheQueueIsFullAndAfterDrain) {
  std::unique_ptr<Model> m = open_tiny(1);
  ASSERT_TRUE(m);
  // a holds the one slot (its callback waits) while b waits in the queue: c finds it full.
  std::promise<void> started, release;
  Collected a, b;
  Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {1, 128, 32, 1});
  ASSERT_TRUE(engine.ok());
  BatchRequest req;
  req.prompt = byte_ids(kPrompts[1]);
  req.max_tokens = 3;
  ASSERT_TRUE((*engine)->submit(req, a.held_callback(release.get_future().share(), &started)).ok());
  started.get_future().wait();
  ASSERT_TRUE((*engine)->submit(req, b.callback()).ok());
  Result<uint64_t> c = (*engine)->submit(req, [](const TokenEvent&) { return true; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().option, "queue");
  EXPECT_EQ((*engine)->stats().requests_queued, 1);
  release.set_value();
  (*engine)->drain();
  EXPECT_EQ(a.finals.size(), 1u);
  EXPECT_EQ(b.finals.size(), 1u);
  EXPECT_EQ(a.ids, b.ids);
  Result<uint64_t> after = (*engine)->submit(req, [](const TokenEvent&) { return true; });
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().option, "queue");

  // Requests that cannot run, and parameters that cannot.
  Result<std::unique_ptr<BatchEngine>> e2 = BatchEngine::create(*m, {1, 16, 32, 1});
  ASSERT_TRUE(e2.ok());
  BatchRequest empty;
  EXPECT_EQ((*e2)->submit(empty, [](const TokenEvent&) { return true; }).error().option, "prompt");
  BatchRequest long_one;
  long_one.prompt = byte_ids(kPrompts[2]);
  EXPECT_EQ((*e2)->submit(long_one, [](const TokenEvent&) { return true; }).error().option, "prompt");
  EXPECT_EQ(BatchEngine::create(*m, {4, 16, 2, 1}).error().option, "n_batch");
  EXPECT_EQ(BatchEngine::create(*m, {0, 16, 2, 1}).error().option, "n_slots");
  EXPECT_EQ((*e2)->params().n_ctx, 16);
  EXPECT_EQ((*BatchEngine::create(*m, {1, 0, 8, 1}))->params().n_ctx, 256) << "the model's context";
}

TEST(BatchEngine, StopStringsAndMaxTokens) {
  std::unique_ptr<Model> m = open_tiny(1);
  ASSERT_TRUE(m);
  BatchRequest req;
  req.prompt = byte_ids(kPrompts[0]);
  req.sampling.temp = 0;
  req.max_tokens = 24;
  const Reference ref = generate_alone(*m, req, 128);
  ASSERT_GE(ref.text.size(), 12u);
  Collected s, n;
  Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {2, 128, 32, 8});
  ASSERT_TRUE(engine.ok());
  // A stop string from the middle of the reference text: the text ends before its first occurrence.
  BatchRequest stopped = req;
  stopped.stop = {"never there \x01", ref.text.substr(6, 3)};
  const size_t cut = ref.text.find(stopped.stop[1]);
  ASSERT_TRUE((*engine)->submit(stopped, s.callback()).ok());
  BatchRequest short_one = req;
  short_one.max_tokens = 5;
  ASSERT_TRUE((*engine)->submit(short_one, n.callback()).ok());
  (*engine)->drain();
  ASSERT_EQ(s.finals.size(), 1u);
  EXPECT_EQ(s.text, ref.text.substr(0, cut));
  EXPECT_TRUE(s.finals[0].stopped_by_string);
  EXPECT_EQ(s.finals[0].stop, StopReason::eog);
  EXPECT_LT(s.ids.size(), ref.ids.size());
  EXPECT_EQ(s.ids,
            std::vector<int32_t>(ref.ids.begin(), ref.ids.begin() + static_cast<ptrdiff_t>(s.ids.size())));
  ASSERT_EQ(n.finals.size(), 1u);
  EXPECT_EQ(n.finals[0].stop, StopReason::n_predict);
  EXPECT_FALSE(n.finals[0].stopped_by_string);
  EXPECT_EQ(n.ids, std::vector<int32_t>(ref.ids.begin(), ref.ids.begin() + 5));
}

// Prompt caching: a request whose prompt starts with what a free slot's cache holds (the next turn of a
// conversation: the last prompt and reply, then more) evaluates only the rest, and gets the tokens it
// gets alone; the slot chosen is the one with the longest prefix, else the least recently used, so an
// unrelated request leaves a conversation's cache alone. f32 and x16 q4_1 matrices, 1 and 2 threads,
// prompts in chunks of at most 16 tokens; and llama.cpp's numerics, which cache nothing.
// Submits req and waits for its final event. The Collected is kept in `kept`, which must outlive the
// engine: a callback still runs when its final event's promise is set.
Collected& run_to_end(BatchEngine& engine, const BatchRequest& req,
                      std::vector<std::unique_ptr<Collected>>& kept) {
  Collected& got = *kept.emplace_back(std::make_unique<Collected>());
  std::future<void> done = got.done.get_future();
  EXPECT_TRUE(engine.submit(req, got.callback()).ok());
  done.wait();
  return got;
}

TEST(BatchEngine, ACachedPromptPrefixGivesTheSameTokens) {
  for (const GgmlType matrices : {GgmlType::F32, GgmlType::Q4_1})
    for (int threads : {1, 2}) {
      SCOPED_TRACE(std::string(ggml_type_name(matrices)) + ", threads " + std::to_string(threads));
      std::unique_ptr<Model> m = open_tiny(threads, matrices);
      ASSERT_TRUE(m);
      // One request at a time, each to its end; its events, and what it gives alone.
      std::vector<std::unique_ptr<Collected>> collected;
      Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {2, 192, 16, 8});
      ASSERT_TRUE(engine.ok()) << engine.error().message();
      auto run = [&](const BatchRequest& req, int64_t want_cached) {
        const Collected& got = run_to_end(**engine, req, collected);
        const Reference want = generate_alone(*m, req, 192);
        EXPECT_EQ(got.ids, want.ids);
        EXPECT_EQ(got.text, want.text);
        EXPECT_EQ(got.finals.at(0).n_prompt, static_cast<int64_t>(req.prompt.size()));
        EXPECT_EQ(got.finals.at(0).n_cached, want_cached);
        return got.ids;
      };
      BatchRequest a;
      a.prompt = byte_ids(kPrompts[0]);
      a.sampling.temp = 0;
      a.max_tokens = 12;
      const std::vector<int32_t> a_ids = run(a, 0);  // slot 0
      ASSERT_EQ(a_ids.size(), 12u);
      BatchRequest other = a;
      other.prompt = byte_ids(kPrompts[2]);
      run(other, 0);  // no common prefix: the slot never used, 1
      // The next turn: a's prompt, its reply and more. The cache holds the prompt and the reply but its
      // last token (sampled at max_tokens, never evaluated).
      BatchRequest next = a;
      next.prompt.insert(next.prompt.end(), a_ids.begin(), a_ids.end());
      const std::vector<int32_t> more = byte_ids(" and then?");
      next.prompt.insert(next.prompt.end(), more.begin(), more.end());
      next.sampling.temp = 0.8f;
      next.sampling.seed = 7;
      run(next, static_cast<int64_t>(a.prompt.size() + a_ids.size() - 1));  // slot 0
      BatchRequest uncached = next;
      uncached.cache_prompt = false;
      run(uncached, 0);  // slot 1, the least recently used
      // The same prompt again: all of it is cached in both slots, but its last token is evaluated.
      run(next, static_cast<int64_t>(next.prompt.size() - 1));
      const BatchEngineStats st = (*engine)->stats();
      const auto n_cached = static_cast<int64_t>(a.prompt.size() + a_ids.size() - 1 + next.prompt.size() - 1);
      EXPECT_EQ(st.tokens_cached, n_cached);
      EXPECT_EQ(st.tokens_prompt + st.tokens_cached,
                static_cast<int64_t>(a.prompt.size() + other.prompt.size() + 3 * next.prompt.size()));
    }

  std::unique_ptr<Model> m = open_tiny(1, GgmlType::Q4_1, Numerics::llamacpp);
  ASSERT_TRUE(m);
  std::vector<std::unique_ptr<Collected>> collected;
  Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {1, 128, 16, 8});
  ASSERT_TRUE(engine.ok()) << engine.error().message();
  BatchRequest req;
  req.prompt = byte_ids(kPrompts[5]);
  req.sampling.temp = 0;
  req.max_tokens = 6;
  for (int i = 0; i < 2; ++i) {
    const Collected& got = run_to_end(**engine, req, collected);
    EXPECT_EQ(got.ids, generate_alone(*m, req, 128).ids);
    EXPECT_EQ(got.finals.at(0).n_cached, 0) << "llama.cpp numerics, request " << i;
  }
  EXPECT_EQ((*engine)->stats().tokens_cached, 0);
}

// Log-probabilities: each token's is the log softmax of its logits alone (Context::eval, in double here),
// its alternatives the largest logits in order; and they are the same bits whatever shares the steps.
TEST(BatchEngine, LogprobsAreTheModelsWhateverTheBatch) {
  std::unique_ptr<Model> m = open_tiny(2, GgmlType::Q4_1);
  ASSERT_TRUE(m);
  std::vector<BatchRequest> reqs = mixed_requests();
  reqs[0].n_logprobs = 3;  // greedy
  reqs[1].n_logprobs = 5;  // sampled, temperature 0.8
  reqs[2].n_logprobs = 0;
  reqs[4].max_tokens = 20;
  std::vector<std::unique_ptr<Collected>> got, solo;
  {
    Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {3, 192, 16, 64});
    ASSERT_TRUE(engine.ok());
    for (const BatchRequest& r : reqs) {
      got.push_back(std::make_unique<Collected>());
      ASSERT_TRUE((*engine)->submit(r, got.back()->callback()).ok());
    }
    (*engine)->drain();
  }
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    // Alone, in an engine of its own.
    {
      Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {1, 192, 512, 4});
      ASSERT_TRUE(engine.ok());
      run_to_end(**engine, reqs[i], solo);
    }
    const std::vector<TokenEvent>& ev = got[i]->tokens;
    ASSERT_EQ(ev.size(), solo[i]->tokens.size());
    ASSERT_FALSE(ev.empty());
    // The logits of each token alone: the prompt, then the tokens one at a time.
    Result<Context> ctx = Context::create(*m, {192, 512, false});
    ASSERT_TRUE(ctx.ok());
    Result<std::span<const float>> l = ctx->eval(reqs[i].prompt);
    for (size_t t = 0; t < ev.size(); ++t) {
      ASSERT_TRUE(l.ok());
      const TokenEvent& e = ev[t];
      EXPECT_EQ(std::memcmp(&e.logprob, &solo[i]->tokens[t].logprob, sizeof(float)), 0) << "token " << t;
      ASSERT_EQ(e.top.size(), solo[i]->tokens[t].top.size());
      for (size_t k = 0; k < e.top.size(); ++k) {
        EXPECT_EQ(e.top[k].id, solo[i]->tokens[t].top[k].id);
        EXPECT_EQ(std::memcmp(&e.top[k].logprob, &solo[i]->tokens[t].top[k].logprob, sizeof(float)), 0);
      }
      double mx = -INFINITY, sum = 0;
      for (float x : *l) mx = std::max(mx, static_cast<double>(x));
      for (float x : *l) sum += std::exp(static_cast<double>(x) - mx);
      auto logp = [&](int32_t id) {
        return static_cast<double>((*l)[static_cast<size_t>(id)]) - mx - std::log(sum);
      };
      EXPECT_NEAR(e.logprob, logp(e.id), 1e-5) << "token " << t;
      EXPECT_LE(e.logprob, 0.0f);
      ASSERT_EQ(e.top.size(), static_cast<size_t>(reqs[i].n_logprobs));
      std::vector<int32_t> order(l->size());
      for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int32_t>(k);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return (*l)[static_cast<size_t>(a)] > (*l)[static_cast<size_t>(b)];
      });
      for (size_t k = 0; k < e.top.size(); ++k) {
        EXPECT_EQ(e.top[k].id, order[k]) << "token " << t << ", alternative " << k;
        EXPECT_NEAR(e.top[k].logprob, logp(order[k]), 1e-5);
      }
      if (reqs[i].sampling.temp <= 0 && !e.top.empty()) {
        EXPECT_EQ(e.top[0].id, e.id) << "greedy takes the most likely";
        EXPECT_EQ(e.top[0].logprob, e.logprob);
      }
      l = ctx->eval(std::span<const int32_t>(&e.id, 1));
    }
  }
  for (size_t i = 3; i < reqs.size(); ++i)
    for (const TokenEvent& e : got[i]->tokens) EXPECT_TRUE(e.top.empty()) << "not asked";
  BatchRequest bad = reqs[0];
  bad.n_logprobs = kMaxLogprobs + 1;
  Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {1, 192, 16, 4});
  ASSERT_TRUE(engine.ok());
  EXPECT_EQ((*engine)->submit(bad, [](const TokenEvent&) { return true; }).error().option, "n_logprobs");
}

TEST(BatchEngine, DestroyingEndsPendingRequests) {
  std::unique_ptr<Model> m = open_tiny(1);
  ASSERT_TRUE(m);
  std::vector<std::unique_ptr<Collected>> got;
  {
    Result<std::unique_ptr<BatchEngine>> engine = BatchEngine::create(*m, {1, 256, 32, 8});
    ASSERT_TRUE(engine.ok());
    BatchRequest req;
    req.prompt = byte_ids(kPrompts[2]);
    for (int i = 0; i < 3; ++i) {
      got.push_back(std::make_unique<Collected>());
      ASSERT_TRUE((*engine)->submit(req, got.back()->callback()).ok());
    }
  }
  for (const auto& g : got) ASSERT_EQ(g->finals.size(), 1u) << "every request gets its final event";
}

}  // namespace
}  // namespace qe::model
