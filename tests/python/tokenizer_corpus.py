"""Test lines for the tokenizer interop tests: prose in several scripts, code, numbers, whitespace runs,
Unicode edge cases, emoji sequences, special tokens inside text, contractions and mixed case.

Deterministic (fixed seed). A "line" may itself contain newlines, tabs and carriage returns, so
lines are written as JSON Lines (one JSON string per line), which tokenize_tool reads when the file
name ends in .jsonl.

    python tests/python/tokenizer_corpus.py OUT.jsonl [--seed N] [--count N]
"""

import argparse
import json
import random

SEED = 20240611
COUNT = 2400

PROSE = {
    "en": "The quick brown fox jumps over the lazy dog while the committee reviews its annual budget "
          "and nobody seems to notice that the coffee machine has been broken since Tuesday",
    "de": "Über den Wolken muss die Freiheit wohl grenzenlos sein, sagte der Bäcker und schloss "
          "die Tür zur Straße, während draußen die Kinder Fußball spielten",
    "fr": "L'été dernier, nous sommes allés à la plage où les enfants ont construit un château "
          "de sable près de l'eau, puis nous avons mangé des crêpes",
    "es": "El niño pequeño comió una manzana mientras su abuela le contaba historias sobre el "
          "mar, los barcos y las ciudades lejanas del norte",
    "ru": "Москва является столицей России, и летом здесь очень много туристов, которые гуляют "
          "по Красной площади и пьют горячий чай",
    "uk": "Київ розташований на берегах Дніпра, його історія налічує понад тисячу років",
    "el": "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας και μια από τις αρχαιότερες πόλεις του κόσμου",
    "zh": "今天天气很好，我们一起去公园散步吧。机器学习是人工智能的一个重要分支，它让计算机从数据中学习。",
    "ja": "東京は日本の首都です。私は毎朝コーヒーを飲みながらニュースを読みます。ひらがなとカタカナも使います。",
    "ko": "안녕하세요, 만나서 반갑습니다. 오늘은 날씨가 정말 좋네요. 한국어 문장을 토큰화합니다.",
    "ar": "مرحبا بالعالم، هذه جملة باللغة العربية لاختبار المحلل اللغوي مع بعض الكلمات الإضافية",
    "he": "שלום עולם, זהו משפט בעברית כדי לבדוק את המפצל",
    "hi": "नमस्ते दुनिया, यह हिंदी में एक वाक्य है जो टोकनाइज़र का परीक्षण करता है",
    "th": "สวัสดีครับ วันนี้อากาศดีมาก เราไปเที่ยวทะเลกันเถอะ",
    "vi": "Tiếng Việt có rất nhiều dấu thanh và chữ cái đặc biệt như ư, ơ, đ, ă, â",
    "tr": "İstanbul'da yaşayan öğrenciler sınavlarına çalışıyorlar ve çay içiyorlar",
    "pl": "Zażółć gęślą jaźń, powiedział nauczyciel do uczniów w szkole",
}

CODE = [
    'def fib(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n'
    '    return fib(n - 1) + fib(n - 2)\n',
    "for i in range(10):\n\tprint(f\"{i:>4} -> {i ** 2}\")",
    "class Foo(Bar):\n    def __init__(self, *args, **kwargs):\n        super().__init__(*args, **kwargs)\n"
    "        self._cache = {}",
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n    printf(\"Hello, %s!\\n\", argv[1]);\n"
    "    return 0;\n}",
    "static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }",
    "if (a != b && c <= d || !e) { x += 0x1F; y >>= 2; z = a ? b : c; }",
    '{"name": "SmolLM2", "layers": 30, "dims": [576, 1536], "tied": true, "eps": 1e-05, "x": null}',
    '[{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}]',
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%smith%' ORDER BY id DESC;",
    "x = [i for i in range(100) if i % 3 == 0]  # list comprehension",
    "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v); }",
    "    return self.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)",
    "<div class=\"container\"><p>Hello &amp; welcome</p></div>",
    "git commit -m 'fix: handle empty input' && git push origin main --force-with-lease",
    "a_b_c = __dunder__ + CONSTANT_VALUE - camelCaseName * PascalCaseName",
]

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
ALMOST_SPECIAL = ["<|im_start", "<|im_", "im_end|>", "<|endoftext", "< |im_end| >", "<|IM_END|>", "<>", "<|>"]

CONTRACTIONS = ["don't", "I'm", "they'll", "we've", "she'd", "it's", "you're", "DON'T", "I'M", "WE'VE",
                "O'Neil", "rock 'n' roll", "'tis", "the '90s", "can’t", "won’t", "it’s", "y'all'd've",
                "students' books", "James's car", "'quoted'", "''double''"]

EMOJI = ["😀", "😂", "🥲", "❤️", "👍", "👍🏽", "👋🏿", "🧑🏻‍💻", "👨‍👩‍👧‍👦", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🇫🇷",
         "🇯🇵", "1️⃣", "#️⃣", "✨", "🔥", "🚀", "🐍", "☕", "⌚", "©️", "™", "🫠", "🫶🏼"]

UNICODE = ["e\u0301", "n\u0303", "a\u030a", "\u0915\u094d\u0937", "Å", "ﬁ", "ﬀ", "Ⅻ", "½", "²", "µ",
           "ß", "ẞ", "İ", "ı", "ǅ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛", "٣٤٥", "१२३", "〇一二三", "Ⓐⓑ",
           "\u200b", "\u200d", "\u00a0", "\u2009", "\u3000", "\ufeff", "\u2028", "Ω", "Ж", "Ѣ", "ﷺ",
           "가각", "\u1100\u1161", "ｈａｌｆ", "ﾊﾝｶｸ", "→⇒∀∃∑∫", "€£¥₿", "§¶†‡", "…", "—", "–", "«»", "„“"]

WHITESPACE = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n", "\n ",
              " \t ", "        ", "\u00a0", "\u3000", "\r"]

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case "
         "point government company number group problem fact be have do say get make go know take see "
         "come think look want give use find tell ask seem feel try leave call good new first last long "
         "great little own other old right big high different small large next early young important "
         "few public bad same able").split()


def _case(rng: random.Random, w: str) -> str:
    r = rng.random()
    if r < 0.6:
        return w
    if r < 0.75:
        return w.capitalize()
    if r < 0.85:
        return w.upper()
    if r < 0.95:
        return "".join(c.upper() if rng.random() < 0.5 else c for c in w)
    return w[:1].lower() + w[1:].upper()


def _prose(rng: random.Random) -> str:
    lang = rng.choice(sorted(PROSE))
    text = PROSE[lang]
    if lang in ("zh", "ja", "th"):
        n = len(text)
        a = rng.randrange(n)
        return text[a:a + rng.randint(3, 60)]
    words = text.split()
    a = rng.randrange(len(words))
    out = " ".join(words[a:a + rng.randint(1, 18)])
    return out + rng.choice(["", ".", "!", "?", ",", " ...", "!!", ":"])


def _english(rng: random.Random) -> str:
    words = [_case(rng, rng.choice(WORDS)) for _ in range(rng.randint(1, 20))]
    for _ in range(rng.randint(0, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(CONTRACTIONS))
    s = " ".join(words)
    return s[0].upper() + s[1:] + rng.choice([".", "?", "!", "", ";", " —"])


def _code(rng: random.Random) -> str:
    c = rng.choice(CODE)
    if rng.random() < 0.4:
        lines = c.split("\n")
        a = rng.randrange(len(lines))
        c = "\n".join(lines[a:a + rng.randint(1, 3)])
    return c


def _number(rng: random.Random) -> str:
    k = rng.randrange(9)
    if k == 0:
        return str(rng.randrange(10 ** rng.randint(1, 30)))
    if k == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}"
    if k == 2:
        return f"{rng.randrange(10**9):,}"
    if k == 3:
        return f"+1 ({rng.randrange(100, 999)}) {rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"
    if k == 4:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T12:34:56Z"
    if k == 5:
        return f"v{rng.randrange(10)}.{rng.randrange(100)}.{rng.randrange(1000)}-rc{rng.randrange(5)}"
    if k == 6:
        return f"{rng.random():.3e} {rng.randrange(256):#04x} {rng.randrange(2**16):b}"
    if k == 7:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 64)))
    return f"{rng.randrange(100)}% of {rng.randrange(10**6)} items cost ${rng.randrange(10**4)}.{rng.randrange(100):02d}"


def _whitespace(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(rng.choice(WHITESPACE) * rng.randint(1, 3))
        if rng.random() < 0.7:
            parts.append(_case(rng, rng.choice(WORDS)))
    s = "".join(parts)
    return s if s else " "


def _unicode(rng: random.Random) -> str:
    parts = [rng.choice(UNICODE) for _ in range(rng.randint(1, 6))]
    sep = rng.choice(["", " ", "-", "\u200b"])
    s = sep.join(parts)
    if rng.random() < 0.5:
        s = _prose(rng) + " " + s
    return s


def _emoji(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 8)):
        parts.append(rng.choice(EMOJI) if rng.random() < 0.6 else rng.choice(WORDS))
    return rng.choice(["", " "]).join(parts)


def _special(rng: random.Random) -> str:
    k = rng.randrange(4)
    if k == 0:
        role = rng.choice(["system", "user", "assistant"])
        return f"<|im_start|>{role}\n{_english(rng)}<|im_end|>" + rng.choice(["", "\n", "\n<|im_start|>assistant\n"])
    if k == 1:
        parts = [rng.choice(SPECIALS + ALMOST_SPECIAL + [_english(rng), " ", "\n", "x"]) for _ in range(rng.randint(2, 7))]
        return "".join(parts)
    if k == 2:
        return _english(rng) + rng.choice(SPECIALS) + _prose(rng)
    return rng.choice(SPECIALS) * rng.randint(1, 3) + rng.choice(["", " ", "  hi", "\n"])


def _mixed(rng: random.Random) -> str:
    gens = [_prose, _english, _code, _number, _whitespace, _unicode, _emoji, _special]
    return rng.choice(["", " ", "\n", "\t"]).join(rng.choice(gens)(rng) for _ in range(rng.randint(2, 4)))


def _random_chars(rng: random.Random) -> str:
    pool = ("abcXYZ019 \t\n.,;:!?'\"()[]{}<>|_-+=*/\\@#$%^&~`" + "".join(UNICODE) + "".join(EMOJI)
            + PROSE["zh"] + PROSE["ru"] + PROSE["ar"])
    return "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))


GENERATORS = [_prose, _english, _code, _number, _whitespace, _unicode, _emoji, _special, _mixed, _random_chars]


def make_lines(seed: int = SEED, count: int = COUNT) -> list:
    """`count` test lines, the same for the same seed. Every generator appears in turn; a few fixed
    edge cases come first."""
    rng = random.Random(seed)
    lines = ["", " ", "  ", "\n", "a", " a", "a ", "Hello world", " Hello world", "Hello  world", "Hello\tworld",
             "hello\n\nworld\n", "<|im_start|>", "<|im_start|><|im_end|>", "x<|endoftext|>y", "don't I'M",
             "1234567890", "3.14159", "日本", "👨‍👩‍👧‍👦", "e\u0301", "   trailing   ", "\t\ttabs", "\r\n"]
    i = 0
    while len(lines) < count:
        lines.append(GENERATORS[i % len(GENERATORS)](rng))
        i += 1
    return lines[:count]


def write_jsonl(path, lines) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--count", type=int, default=COUNT)
    args = ap.parse_args()
    write_jsonl(args.out, make_lines(args.seed, args.count))


if __name__ == "__main__":
    main()
