// What every level's llama.cpp tables share with its fast table: the ops whose bits do not depend on
// the numerics (one exact rounding per element, or byte-identical to formats/blocks.h).
#include "kernels/kernel_tables.h"

namespace qe::kernels {

void finish_level(LevelTables& t, Isa isa, FillLlamacppFn fill_llamacpp) {
  const KernelTable& f = t.fast;
  for (KernelTable* l : {&t.llamacpp_batch, &t.llamacpp_single}) {
    if (fill_llamacpp) fill_llamacpp(*l, l == &t.llamacpp_single);
    l->isa = isa;
    l->numerics = Numerics::llamacpp;
    l->add = f.add;
    l->scale = f.scale;
    l->to_f32_f16 = f.to_f32_f16;
    l->to_f32_bf16 = f.to_f32_bf16;
    l->to_f32_q4_0 = f.to_f32_q4_0;
    l->to_f32_q4_1 = f.to_f32_q4_1;
    l->to_f32_q8_0 = f.to_f32_q8_0;
    l->quantize_row_q4_0 = f.quantize_row_q4_0;
    l->quantize_row_q4_1 = f.quantize_row_q4_1;
    l->quantize_row_q8_0 = f.quantize_row_q8_0;
    l->from_f32_f16 = f.from_f32_f16;
    l->from_f32_bf16 = f.from_f32_bf16;
    l->error_stats = f.error_stats;
  }
}

}  // namespace qe::kernels
