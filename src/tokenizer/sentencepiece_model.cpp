#include "tokenizer/sentencepiece_model.h"

#include <fmt/format.h>

#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "tokenizer/utf8.h"

namespace qe::tokenizer {

namespace {

// Protobuf wire types (protobuf encoding spec). Groups (3, 4) are deprecated and never appear in
// sentencepiece_model.proto, so they are an error like any other unknown wire type.
constexpr uint32_t kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

class Reader {
 public:
  Reader(std::span<const uint8_t> b, const std::string& file, std::string path)
      : b_(b), file_(file), path_(std::move(path)) {}

  bool done() const { return pos_ >= b_.size(); }
  Error error(std::string_view field, std::string reason) const {
    return Error{file_, path_.empty() ? std::string(field) : path_ + "." + std::string(field),
                 fmt::format("{} (byte {})", reason, pos_)};
  }

  Result<uint64_t> varint(std::string_view what) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= b_.size()) return error(what, "truncated varint");
      const uint8_t c = b_[pos_++];
      v |= static_cast<uint64_t>(c & 0x7F) << shift;
      if ((c & 0x80) == 0) return v;
    }
    return error(what, "varint longer than 10 bytes");
  }

  Result<std::span<const uint8_t>> bytes(std::string_view what) {
    Result<uint64_t> n = varint(what);
    if (!n) return n.error();
    if (*n > b_.size() - pos_) return error(what, fmt::format("length {} runs past the end", *n));
    std::span<const uint8_t> s = b_.subspan(pos_, static_cast<size_t>(*n));
    pos_ += static_cast<size_t>(*n);
    return s;
  }

  Result<float> fixed32(std::string_view what) {
    if (b_.size() - pos_ < 4) return error(what, "truncated fixed32");
    uint32_t u = 0;
    for (int i = 3; i >= 0; --i) u = (u << 8) | b_[pos_ + static_cast<size_t>(i)];  // little-endian
    pos_ += 4;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  // Skips a field we do not need.
  Status skip(uint32_t wire, std::string_view what) {
    switch (wire) {
      case kVarint: {
        Result<uint64_t> v = varint(what);
        return v ? Status::Ok() : Status(v.error());
      }
      case kFixed64:
        if (b_.size() - pos_ < 8) return error(what, "truncated fixed64");
        pos_ += 8;
        return Status::Ok();
      case kLengthDelimited: {
        Result<std::span<const uint8_t>> s = bytes(what);
        return s ? Status::Ok() : Status(s.error());
      }
      case kFixed32:
        if (b_.size() - pos_ < 4) return error(what, "truncated fixed32");
        pos_ += 4;
        return Status::Ok();
      default:
        return error(what, fmt::format("unsupported wire type {}", wire));
    }
  }

 private:
  std::span<const uint8_t> b_;
  const std::string& file_;
  std::string path_;
  size_t pos_ = 0;
};

// Reads (field number, wire type) keys and dispatches; `on_field` returns true when it consumed it.
template <class F>
Status for_each_field(Reader& r, F&& on_field) {
  while (!r.done()) {
    Result<uint64_t> key = r.varint("key");
    if (!key) return key.error();
    const uint64_t field = *key >> 3;
    const uint32_t wire = static_cast<uint32_t>(*key & 7);
    if (field == 0 || field > 0x1FFFFFFF) return r.error("key", fmt::format("invalid field number {}", field));
    Result<bool> used = on_field(static_cast<uint32_t>(field), wire);
    if (!used) return used.error();
    if (!*used) {
      if (Status s = r.skip(wire, fmt::format("field {}", field)); !s) return s;
    }
  }
  return Status::Ok();
}

Status expect_wire(Reader& r, uint32_t wire, uint32_t want, std::string_view name) {
  if (wire != want) return r.error(name, fmt::format("wire type {}, expected {}", wire, want));
  return Status::Ok();
}

// A field's value, once its wire type is the one its proto type is written with.
Result<uint64_t> varint_field(Reader& r, uint32_t wire, std::string_view name) {
  if (Status e = expect_wire(r, wire, kVarint, name); !e) return e.error();
  return r.varint(name);
}

Result<std::span<const uint8_t>> bytes_field(Reader& r, uint32_t wire, std::string_view name) {
  if (Status e = expect_wire(r, wire, kLengthDelimited, name); !e) return e.error();
  return r.bytes(name);
}

Result<std::string> string_field(Reader& r, uint32_t wire, std::string_view name) {
  Result<std::span<const uint8_t>> b = bytes_field(r, wire, name);
  if (!b) return b.error();
  return std::string(reinterpret_cast<const char*>(b->data()), b->size());
}

Result<SpmPiece> parse_piece(std::span<const uint8_t> b, const std::string& file, size_t index) {
  Reader r(b, file, fmt::format("pieces[{}]", index));
  SpmPiece p;
  Status s = for_each_field(r, [&](uint32_t field, uint32_t wire) -> Result<bool> {
    if (field == 1) {
      Result<std::string> text = string_field(r, wire, "piece");
      if (!text) return text.error();
      // SentencePiece writes UTF-8 only; a piece that is not could not be written to tokenizer.json
      // (or to any JSON) without changing it, and would no longer be the token it was.
      if (const size_t ok = utf8_valid_prefix(*text); ok < text->size())
        return r.error("piece", fmt::format("is not valid UTF-8 at its byte {}", ok));
      p.piece = std::move(*text);
      return true;
    }
    if (field == 2) {
      if (Status e = expect_wire(r, wire, kFixed32, "score"); !e) return e.error();
      Result<float> f = r.fixed32("score");
      if (!f) return f.error();
      p.score = *f;
      return true;
    }
    if (field == 3) {
      Result<uint64_t> t = varint_field(r, wire, "type");
      if (!t) return t.error();
      if (*t < 1 || *t > 6) return r.error("type", fmt::format("unknown piece type {}", *t));
      p.type = static_cast<SpmPieceType>(*t);
      return true;
    }
    return false;
  });
  if (!s) return s.error();
  return p;
}

// proto2 int32 fields are sign-extended to 64 bits on the wire (-1 is ten bytes).
int32_t as_int32(uint64_t v) { return static_cast<int32_t>(static_cast<int64_t>(v)); }

Status parse_trainer_spec(std::span<const uint8_t> b, const std::string& file, SpmModel& m) {
  Reader r(b, file, "trainer_spec");
  return for_each_field(r, [&](uint32_t field, uint32_t wire) -> Result<bool> {
    int32_t* target = nullptr;
    bool* flag = nullptr;
    std::string_view name;
    switch (field) {
      case 3: target = &m.model_type, name = "model_type"; break;
      case 35: flag = &m.byte_fallback, name = "byte_fallback"; break;
      case 40: target = &m.unk_id, name = "unk_id"; break;
      case 41: target = &m.bos_id, name = "bos_id"; break;
      case 42: target = &m.eos_id, name = "eos_id"; break;
      case 43: target = &m.pad_id, name = "pad_id"; break;
      default: return false;
    }
    Result<uint64_t> v = varint_field(r, wire, name);
    if (!v) return v.error();
    if (target) *target = as_int32(*v);
    else *flag = *v != 0;
    return true;
  });
}

Status parse_normalizer_spec(std::span<const uint8_t> b, const std::string& file, SpmModel& m) {
  Reader r(b, file, "normalizer_spec");
  return for_each_field(r, [&](uint32_t field, uint32_t wire) -> Result<bool> {
    if (field == 1) {
      Result<std::string> s = string_field(r, wire, "name");
      if (!s) return s.error();
      m.normalizer_name = std::move(*s);
      return true;
    }
    if (field == 3 || field == 4) {
      const std::string_view name = field == 3 ? "add_dummy_prefix" : "remove_extra_whitespaces";
      Result<uint64_t> v = varint_field(r, wire, name);
      if (!v) return v.error();
      (field == 3 ? m.add_dummy_prefix : m.remove_extra_whitespaces) = *v != 0;
      return true;
    }
    return false;
  });
}

}  // namespace

Result<SpmModel> parse_sentencepiece_model(std::span<const uint8_t> bytes, const std::string& file) {
  SpmModel m;
  Reader r(bytes, file, "");
  Status s = for_each_field(r, [&](uint32_t field, uint32_t wire) -> Result<bool> {
    if (field < 1 || field > 3) return false;  // self_test_data, denormalizer_spec: not needed
    static constexpr std::string_view kNames[] = {"", "pieces", "trainer_spec", "normalizer_spec"};
    Result<std::span<const uint8_t>> sub = bytes_field(r, wire, kNames[field]);
    if (!sub) return sub.error();
    if (field == 1) {
      Result<SpmPiece> p = parse_piece(*sub, file, m.pieces.size());
      if (!p) return p.error();
      m.pieces.push_back(std::move(*p));
    } else if (field == 2) {
      if (Status e = parse_trainer_spec(*sub, file, m); !e) return e.error();
    } else {
      if (Status e = parse_normalizer_spec(*sub, file, m); !e) return e.error();
    }
    return true;
  });
  if (!s) return s.error();
  if (m.pieces.empty()) return Error{file, "pieces", "no pieces (not a SentencePiece model?)"};
  return m;
}

}  // namespace qe::tokenizer
