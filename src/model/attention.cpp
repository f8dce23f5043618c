#include "model/attention.h"

#include <algorithm>
#include <cmath>

#include "formats/blocks.h"
#include "kernels/thread_team.h"

namespace qe::model {
namespace {

constexpr int64_t kB = kernels::kAttnBlock;
// Query rows (token, head) of one work item: each key/value block read from the cache serves all of
// them; 128 rows x 64 features keep q and o in 64 KiB (L2).
constexpr int64_t kMaxRows = 128;

int64_t padded_dim(const Config& c) {
  return (c.head_dim + kernels::kAttnPad - 1) / kernels::kAttnPad * kernels::kAttnPad;
}

// Floats of one thread's scratch: q and o (kMaxRows, ld), a multiple of 16 floats (64 bytes).
int64_t per_thread_floats(const Config& c) {
  return 2 * kMaxRows * padded_dim(c);
}

// A work item's shape: `tokens` consecutive tokens x `heads` query heads of one KV head. Any shape gives
// the same bits per (token, head), so the split only balances the threads: as large as kMaxRows allows
// (fewer cache reads per row), halved while there are fewer than two items per thread (decode: one token, so
// the query heads of a group are split instead, each item reading the group's keys again).
struct Split {
  int64_t tokens, heads;
};
Split split_work(int64_t n_tokens, int64_t group, int64_t n_kv_heads, int n_threads) {
  Split s{0, std::min(group, kMaxRows)};
  s.tokens = std::clamp<int64_t>(kMaxRows / s.heads, 1, n_tokens);
  auto items = [&] {
    return (n_tokens + s.tokens - 1) / s.tokens * n_kv_heads * ((group + s.heads - 1) / s.heads);
  };
  while (items() < 2 * int64_t{n_threads}) {
    if (s.tokens > 8)
      s.tokens = (s.tokens + 1) / 2;
    else if (s.heads > 1)
      s.heads = (s.heads + 1) / 2;
    else
      break;
  }
  return s;
}

// Key block k0 of KV head g in a layer of a tiles cache, with the keys its rows see: K^T, the head's
// head_dim feature rows of the block's tile (kB keys each); V, its rows by position (kv_cache.h).
kernels::AttnBlockRef key_block(const KvCache& kv, int64_t layer, int64_t g, int64_t head_dim, int64_t k0,
                            int64_t n_keys) {
  const int64_t esz = kv.elem_bytes(), kv_dim = kv.kv_dim();
  return {kv.k_layer(layer) + (k0 * kv_dim + g * head_dim * kB) * esz,
          kv.v_layer(layer) + (k0 * kv_dim + g * head_dim) * esz, n_keys};
}

// A run's split when the step has n_runs runs on n_threads threads: each is split as if it had its share
// of the threads (the split changes no bits, only the balance).
Split run_split(const Config& c, int64_t n_tokens, int64_t n_runs, int n_threads) {
  const int run_threads = static_cast<int>(std::max<int64_t>(1, n_threads / n_runs));
  return split_work(n_tokens, c.n_heads / c.n_kv_heads, c.n_kv_heads, run_threads);
}

bool one_item_per_kv_head(const Config& c, const Split& sp, int64_t n_tokens) {
  return sp.tokens >= n_tokens && sp.heads >= c.n_heads / c.n_kv_heads;
}

// A thread's share of a step's attention, in keys read by a query row: the sum over runs of tokens x keys
// (each head alike), over the threads.
int64_t fair_share(std::span<const SeqRun> runs, int n_threads) {
  int64_t keys = 0;
  for (const SeqRun& r : runs) keys += r.n_tokens * (r.pos + r.n_tokens);
  return keys / n_threads;
}

// attention_owns_token. With fewer than two runs a thread, or a token whose keys alone are more than a
// thread's share (one long context among short ones), smaller items keep the threads even.
bool owns_token(const Config& c, const SeqRun& run, int64_t n_runs, int64_t fair, int n_threads) {
  return run.n_tokens == 1 && n_runs >= 2 * int64_t{n_threads} && run.pos + 1 <= fair &&
         c.n_heads <= kMaxRows;
}

}  // namespace

bool attention_owns_token(const Config& c, std::span<const SeqRun> runs, int64_t r, int n_threads) {
  return owns_token(c, runs[static_cast<size_t>(r)], static_cast<int64_t>(runs.size()),
                    fair_share(runs, n_threads), n_threads);
}

bool attention_stores_kv(const Config& c, std::span<const SeqRun> runs, int64_t r, int n_threads) {
  const int64_t n_tokens = runs[static_cast<size_t>(r)].n_tokens, n_runs = static_cast<int64_t>(runs.size());
  return attention_owns_token(c, runs, r, n_threads) ||
         one_item_per_kv_head(c, run_split(c, n_tokens, n_runs, n_threads), n_tokens);
}

int64_t attention_scratch_floats(const Config& c) {
  return per_thread_floats(c) + 16;
}

// Flash-style: a work item takes a block of tokens x the query heads of one KV head, and walks the key
// blocks [0, 64), [64, 128), ... up to its last token's position. Each block of K and V is read from the
// cache as it lies (K transposed in tiles, kv_cache.h) and feeds every row of the item, and each row keeps a running max,
// sum and unnormalised output (online softmax), divided by the sum at the end.
//
// Batch invariance: blocks sit at absolute positions with a fixed size, a row sees exactly the blocks
// up to its own position and, in its last block, exactly its own keys (the kernel masks the rest by
// replacement and stops its sums at them); the kernel's per-row arithmetic does not depend on the other
// rows. So a (token, head) gets the same bits in a prompt batch, in decoding and on any thread count.
// Whatever the cache holds past a row's own keys (stale positions of a K tile) is masked, never summed.
//
// Several runs (sequences) share the one parallel region: their work items are numbered one run after
// the other, the last run first (a step's prompt chunks come after its decode tokens and are the most
// work), each run split as if it had its share of the threads.
void attention(const kernels::KernelTable& k, const Config& c, std::span<const SeqRun> runs, int64_t layer,
               RunState& s, kernels::ActivationBuffer* out) {
  QE_CHECK(k.attn_block_f16 != nullptr && k.attn_block_f32 != nullptr);
  QE_CHECK(static_cast<int64_t>(s.attn.size()) >= s.n_threads * per_thread_floats(c));
  const int64_t n_runs = static_cast<int64_t>(runs.size());
  QE_CHECK(n_runs >= 1 && n_runs < static_cast<int64_t>(s.attn_items.size()));
  const int64_t head_dim = c.head_dim, ld = padded_dim(c), q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int64_t group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t fair = fair_share(runs, s.n_threads);
  // A run's rows and items: token blocks x (KV heads x blocks of their query heads).
  struct RunWork {
    const SeqRun* run = nullptr;
    int64_t row0 = 0;  // its first row of s.q / s.att
    Split sp{1, 1};
    int64_t n_tblocks = 0, n_hblocks = 0, per_token_block = 0;
    bool stores = false;  // attention_stores_kv
    bool owned = false;   // attention_owns_token: one item, all KV heads
  };
  auto run_work = [&](int64_t i) {  // runs[i]
    RunWork rw;
    rw.run = &runs[static_cast<size_t>(i)];
    for (int64_t j = 0; j < i; ++j) rw.row0 += runs[static_cast<size_t>(j)].n_tokens;
    rw.sp = run_split(c, rw.run->n_tokens, n_runs, s.n_threads);
    rw.owned = owns_token(c, *rw.run, n_runs, fair, s.n_threads);
    rw.stores = rw.owned || one_item_per_kv_head(c, rw.sp, rw.run->n_tokens);
    rw.n_tblocks = (rw.run->n_tokens + rw.sp.tokens - 1) / rw.sp.tokens;
    rw.n_hblocks = (group + rw.sp.heads - 1) / rw.sp.heads;
    rw.per_token_block = rw.owned ? 1 : c.n_kv_heads * rw.n_hblocks;
    QE_CHECK(rw.owned || out == nullptr);
    return rw;
  };
  // first_item[i]: the first work item of runs[n_runs - 1 - i] (the last run first).
  int64_t* first_item = s.attn_items.data();
  first_item[0] = 0;
  for (int64_t i = 0; i < n_runs; ++i) {
    const RunWork rw = run_work(n_runs - 1 - i);
    first_item[i + 1] = first_item[i] + rw.n_tblocks * rw.per_token_block;
  }
  // The first key block of a work item (its run found from run index `from` on), at most the keys its
  // run's last token sees.
  auto first_block = [&](int64_t item, int64_t from) {
    while (item >= first_item[from + 1]) ++from;
    const RunWork rw = run_work(n_runs - 1 - from);
    const int64_t g = (item - first_item[from]) % rw.per_token_block / rw.n_hblocks;
    return key_block(*rw.run->kv, layer, g, head_dim, 0, std::min(kB, rw.run->pos + rw.run->n_tokens));
  };
  // 64-byte aligned base for every thread's scratch
  float* scratch0 = s.attn.data();
  scratch0 += (16 - (reinterpret_cast<uintptr_t>(scratch0) / sizeof(float)) % 16) % 16;

  // A query row's start in an item's scratch: q * scale (zeros past head_dim), o = 0, m = -inf, l = 0.
  auto start_row = [&](const float* q, float* q_scaled, float* o_row, float& m_row, float& l_row) {
    k.scale(q, scale, q_scaled, head_dim);
    std::fill(q_scaled + head_dim, q_scaled + ld, 0.0f);
    std::fill(o_row, o_row + ld, 0.0f);
    m_row = -INFINITY;
    l_row = 0.0f;
  };

  // An owned run's token (attention_owns_token), row r of the item = query head r. after: the block read
  // after the item's last (the chunk's next item), for the kernel to request.
  auto owned_token = [&](const RunWork& rw, float* qs, float* o, float* m, float* l, int32_t* nv,
                         const kernels::AttnBlockRef& after) {
    KvCache& kv = *rw.run->kv;
    const kernels::AttnBlockFn block = kv.type() == GgmlType::F16 ? k.attn_block_f16 : k.attn_block_f32;
    const int64_t pos = rw.run->pos, n_kv = c.n_kv_heads;
    float* const q_row = s.q.data() + rw.row0 * q_dim;
    float* const k_row = s.k.data() + rw.row0 * kv_dim;
    s.rope.rotate(k, c, q_row, k_row, pos);
    for (int64_t r = 0; r < c.n_heads; ++r)
      start_row(q_row + r * head_dim, qs + r * ld, o + r * ld, m[r], l[r]);
    // Block by block, every KV head of a block before the next block: a block's K^T tiles and V rows
    // of all heads lie together in the cache.
    const int64_t n_keys = pos + 1;
    for (int64_t k0 = 0; k0 < n_keys; k0 += kB) {
      const int64_t nk = std::min(kB, n_keys - k0);
      for (int64_t g = 0; g < n_kv; ++g) {
        const kernels::AttnBlockRef cur = key_block(kv, layer, g, head_dim, k0, nk);
        if (k0 + nk == n_keys)  // the block that holds the token: its K and V first (attention_stores_kv)
          kv.store(layer, pos, g * head_dim, head_dim, k_row + g * head_dim,
                   s.v.data() + rw.row0 * kv_dim + g * head_dim, k.from_f32_f16);
        std::fill(nv + g * group, nv + (g + 1) * group, static_cast<int32_t>(nk));
        const kernels::AttnBlockRef next =
            g + 1 < n_kv       ? key_block(kv, layer, g + 1, head_dim, k0, nk)
            : k0 + kB < n_keys ? key_block(kv, layer, 0, head_dim, k0 + kB, std::min(kB, n_keys - k0 - kB))
                               : after;
        block(group, head_dim, ld, qs + g * group * ld, cur.kt, kB, cur.v, kv_dim, nv + g * group,
              m + g * group, l + g * group, o + g * group * ld, next.kt != nullptr ? &next : nullptr);
      }
    }
    float* const att_row = s.att.data() + rw.row0 * q_dim;
    for (int64_t r = 0; r < c.n_heads; ++r)
      k.scale(o + r * ld, 1.0f / l[r], att_row + r * head_dim, head_dim);
    if (out != nullptr) out->convert(rw.row0, att_row, k);
  };

  s.team->run(
      first_item[n_runs],
      [&](int64_t begin, int64_t end, int thread) {
        float* qs = scratch0 + thread * per_thread_floats(c);  // (rows, ld) q * scale
        float* o = qs + kMaxRows * ld;                         // (rows, ld) unnormalised output
        float m[kMaxRows], l[kMaxRows];
        int32_t nv[kMaxRows];
        int64_t i = std::upper_bound(first_item, first_item + n_runs + 1, begin) - first_item - 1;
        RunWork rw = run_work(n_runs - 1 - i);
        for (int64_t item = begin; item < end; ++item) {
          if (item >= first_item[i + 1]) {
            while (item >= first_item[i + 1]) ++i;
            rw = run_work(n_runs - 1 - i);
          }
          KvCache& kv = *rw.run->kv;
          QE_CHECK(kv.layout() == KvLayout::tiles);
          if (rw.owned) {
            owned_token(rw, qs, o, m, l, nv,
                        item + 1 < end ? first_block(item + 1, i) : kernels::AttnBlockRef{});
            continue;
          }
          const kernels::AttnBlockFn block = kv.type() == GgmlType::F16 ? k.attn_block_f16 : k.attn_block_f32;
          const int64_t pos = rw.run->pos, n_tokens = rw.run->n_tokens;
          const Split& sp = rw.sp;
          const int64_t local = item - first_item[i], n_hblocks = rw.n_hblocks;
          float* const q_rows = s.q.data() + rw.row0 * q_dim;
          float* const att_rows = s.att.data() + rw.row0 * q_dim;
          // The last tokens first: they see the most keys, so a range's chunks, which shrink as it runs out,
          // and the back halves thieves take (kernels/thread_team.h) hold the cheaper items.
          const int64_t tb = rw.n_tblocks - 1 - local / rw.per_token_block;
          const int64_t g = local % rw.per_token_block / n_hblocks, hb = local % n_hblocks;
          const int64_t t0 = tb * sp.tokens, t1 = std::min(n_tokens, t0 + sp.tokens);
          const int64_t h0 = hb * sp.heads, h1 = std::min(group, h0 + sp.heads), nh = h1 - h0;
          const int64_t n_rows = (t1 - t0) * nh;
          for (int64_t t = t0; t < t1; ++t)
            for (int64_t h = h0; h < h1; ++h) {
              const int64_t r = (t - t0) * nh + h - h0;
              start_row(q_rows + t * q_dim + (g * group + h) * head_dim, qs + r * ld, o + r * ld, m[r], l[r]);
            }
          const int64_t n_keys = pos + t1;  // keys any row of the item sees
          for (int64_t k0 = 0; k0 < n_keys; k0 += kB) {
            const kernels::AttnBlockRef cur =
                key_block(kv, layer, g, head_dim, k0, std::min(kB, n_keys - k0));
            // Rows of tokens before this block do not see it; rows are in token order.
            const int64_t t_first = std::max(t0, k0 - pos), r0 = (t_first - t0) * nh;
            // The item's own new positions in this block, when it stores them (rw.stores: t0 = 0, t1 =
            // n_tokens), now that the previous block's call has requested the block's lines.
            if (rw.stores)
              for (int64_t t = std::max<int64_t>(0, k0 - pos); t < std::min(n_tokens, k0 + kB - pos); ++t) {
                const int64_t row = (rw.row0 + t) * kv_dim + g * head_dim;
                kv.store(layer, pos + t, g * head_dim, head_dim, s.k.data() + row, s.v.data() + row,
                         k.from_f32_f16);
              }
            for (int64_t r = r0; r < n_rows; ++r)
              nv[r] = static_cast<int32_t>(std::min(kB, pos + t0 + r / nh + 1 - k0));
            // The block read next, for the kernel to request while it computes this one: the item's next
            // block, else the first block of the chunk's next item (a decode item has one to three).
            const kernels::AttnBlockRef next =
                k0 + kB < n_keys ? key_block(kv, layer, g, head_dim, k0 + kB, std::min(kB, n_keys - k0 - kB))
                : item + 1 < end ? first_block(item + 1, i)
                                 : kernels::AttnBlockRef{};
            block(n_rows - r0, head_dim, ld, qs + r0 * ld, cur.kt, kB, cur.v, kv_dim, nv + r0, m + r0, l + r0,
                  o + r0 * ld, next.kt != nullptr ? &next : nullptr);
          }
          for (int64_t r = 0; r < n_rows; ++r) {
            const int64_t t = t0 + r / nh, h = h0 + r % nh;
            k.scale(o + r * ld, 1.0f / l[r], att_rows + t * q_dim + (g * group + h) * head_dim, head_dim);
          }
        }
      },
      /*min_chunk=*/1);
}
void attention_llamacpp(const kernels::KernelTable& k, const Config& c, const KvCache& kv, int64_t layer,
                        RunState& s, int64_t n_tokens, int64_t pos) {
  const int64_t head_dim = c.head_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim(), n_ctx = kv.n_ctx();
  const int64_t group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  QE_CHECK(kv.layout() == KvLayout::rows);
  const auto* k_cache = reinterpret_cast<const uint16_t*>(kv.k_layer(layer));  // (n_ctx, kv_dim)
  const auto* v_cache = reinterpret_cast<const uint16_t*>(kv.v_layer(layer));  // (kv_dim, n_ctx)
  // tinyBLAS takes a batch only when the dot length is a multiple of 8 (K q: head_dim) and the rows a
  // multiple of 4 (V^T p: head_dim); llama.cpp falls back to ggml_vec_dot_f16 for other shapes.
  const kernels::F16DotFn kq_dot = head_dim % 8 == 0 ? k.dot_f16 : k.dot_f16_gemv;
  const kernels::F16DotFn kqv_dot = head_dim % 4 == 0 ? k.dot_f16 : k.dot_f16_gemv;
  const int64_t n_work = n_tokens * c.n_heads;

  s.team->run(
      n_work,
      [&](int64_t begin, int64_t end, int thread) {
        float* scores = s.scores.data() + thread * s.n_ctx;                 // (n_keys)
        uint16_t* p16 = s.scores16.data() + thread * (s.n_ctx + head_dim);  // (n_keys) in f16
        uint16_t* q16 = p16 + s.n_ctx;                                      // (head_dim) in f16
        for (int64_t i = begin; i < end; ++i) {
          const int64_t t = i / c.n_heads, h = i % c.n_heads, g = h / group;
          const int64_t n_keys = pos + t + 1, n_pad = (n_keys + 31) / 32 * 32;
          const float* q = s.q.data() + t * q_dim + h * head_dim;
          for (int64_t j = 0; j < head_dim; ++j) q16[j] = fp32_to_fp16(q[j]);
          for (int64_t p = 0; p < n_keys; ++p)
            scores[p] = kq_dot(head_dim, head_dim, k_cache + p * kv_dim + g * head_dim, q16);
          k.softmax(scores, n_keys, scale);
          for (int64_t p = 0; p < n_keys; ++p) p16[p] = fp32_to_fp16(scores[p]);
          float* out = s.att.data() + t * q_dim + h * head_dim;
          for (int64_t j = 0; j < head_dim; ++j)
            out[j] = kqv_dot(n_keys, n_pad, v_cache + (g * head_dim + j) * n_ctx, p16);
        }
      },
      /*min_chunk=*/1);
}

}  // namespace qe::model
