"""Deterministic test strings for the tokenizer fixtures and benchmark (no downloads).

Everything is built from hand-written samples below, random combinations of them, and, where this
machine has them, real multilingual text from local files (the chardet test corpus that ships with
the Google Cloud SDK, decoded from its legacy encodings; Python's own standard-library sources; the
vim documentation). The fixtures are committed, so regenerating them elsewhere only matters to
whoever changes them.
"""
import glob
import os
import random
import unicodedata

CHARDET = "/usr/lib/google-cloud-sdk/platform/gsutil/third_party/chardet/tests"
# Folder -> Python codec of the chardet test files we sample.
CHARDET_CODECS = {
    "GB2312": "gb18030", "Big5": "big5", "EUC-JP": "euc_jp", "SHIFT_JIS": "shift_jis",
    "EUC-KR": "euc_kr", "windows-1256-arabic": "cp1256", "windows-1255-hebrew": "cp1255",
    "TIS-620": "tis_620", "KOI8-R": "koi8_r", "iso-8859-7-greek": "iso8859_7",
    "windows-1254-turkish": "cp1254", "windows-1250-czech": "cp1250", "utf-8": "utf-8",
}

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged that a single man in possession of a good fortune must be in want of a wife.",
    "I'm sure they'll say we've done what we'd planned, but you're wrong: it isn't over.",
    "DON'T SHOUT! I'M RIGHT HERE. THEY'LL HEAR YOU, WE'VE BEEN TOLD.",
    "Mixture-of-Experts models route each token to a few experts; the rest stay on disk.",
    "Q: What is 2 + 2?\nA: 4.\n\nQ: And 12345 * 6789?\nA: 83810205.",
    "Email me at someone@example.com or visit https://example.org/path?q=1&r=two#frag.",
    "  leading spaces, trailing spaces   ",
    "Tabs\tbetween\twords\tand a final tab\t",
    "Line one\nLine two\r\nLine three\rLine four\n\n\nafter blank lines",
    "Prices: $5.99, €3,50, £10 and ¥1000; 50% off!!! (limited) [time] {only}",
    "Well... that's--how do you say it?--unexpected; isn't it?",
    "Naïve café owners in Zürich serve crème brûlée and smørrebrød.",
    "\"Quoted\" 'single' `backtick` «guillemets» „low“ ‘curly’",
    "We'Ll see; they'S here, I'D go, it'T is, he'M... o'clock, rock'n'roll, y'all",
]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"hello, %s!\\n\", \"world\");\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product",
    "{\"name\": \"flashmoe\", \"version\": [0, 1, 0], \"ok\": true, \"none\": null}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<div class=\"box\"><p>Hello &amp; welcome</p></div>\n",
    "fn main() -> Result<(), Box<dyn Error>> {\n    let x: Vec<u8> = vec![1, 2, 3];\n    Ok(())\n}\n",
    "    \n        \n\t\t\n  x = [1,2,3]\n",
    "if __name__ == '__main__':\n    main()\r\n",
    "$ ls -la /usr/bin | grep -E '^-rwx' | wc -l\n",
    "a+=1;b-=2;c*=3;d/=4;e%=5;f**=6;g//=7;h>>=8;i<<=9;j&=10;k|=11;l^=12",
    "```python\nprint('x')\n```\n",
]

MULTILINGUAL = [
    "你好，世界！今天天气很好。我们去公园散步吧。",
    "日本語のテキストです。ひらがな、カタカナ、漢字が混ざっています。",
    "한국어 문장입니다. 안녕하세요, 만나서 반갑습니다!",
    "مرحبا بالعالم! هذه جملة باللغة العربية.",
    "الْعَرَبِيَّةُ لُغَةٌ جَمِيلَةٌ",  # with harakat (combining marks)
    "שָׁלוֹם עוֹלָם",  # Hebrew with points
    "नमस्ते, आप कैसे हैं? भारत एक विशाल देश है।",
    "ज़िंदगी क़लम ख़ुशी फ़िल्म",  # precomposed nukta letters (NFC decomposes them)
    "\u091c\u093c\u093f\u0902\u0926\u0917\u0940 \u0915\u093c\u0932\u092e",  # the same, decomposed
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε! Ελληνικά γράμματα.",
    "Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ ế ề ể ễ ệ ố ồ ổ ỗ ộ",
    "Tie\u0302\u0301ng Vie\u0323\u0302t decomposed",  # NFD Vietnamese, marks out of order
    "Ελληνικά: ᾅ ᾍ ῷ",
    "Emoji: 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 1️⃣ #️⃣ ❤️ 🏳️‍🌈 🧑🏿‍💻",
    "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ　１２３",
    "𝐀𝐁𝐂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐌰𐌱𐌲 𓀀𓀁",
    "½ ¾ ² ³ ٣٤٥ ১২৩ Ⅻ ⅷ",
    "한글 자모: \u1112\u1161\u11ab\u1100\u1173\u11af",  # conjoining jamo -> syllables under NFC
]

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
            "</tool_call>", "<tool_response>", "</tool_response>", "<|fim_prefix|>", "<|vision_pad|>"]

SPECIAL_TEXTS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nLet me think.\n</think>\n\nThe answer is 42.<|im_end|>",
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
    "<|im_end|<|im_end|><<|im_end|>>|im_end|>",
    "<|im_start|><|im_start|><|im_end|><|endoftext|>",
    "text<|endoftext|>more text",
    "  <|im_end|>  ",
    "<|im_start|>system",
    "<thinking> is not <think>",
]

# Strings that exercise the extra added tokens of the qwen3_flags variant (see its patch.json).
FLAG_TEXTS = [
    "<mask> x", "a <mask>", "a  \t<mask>b", "a\u3000<mask>", "<mask><mask>", " <mask> <mask> ",
    "[SW] w", "x[SW] y", "w [SW]", "w [SW]x", "\u00e9[SW]", "_[SW]", "1[SW]", "-[SW]-", "\u0301[SW]", "[SW]\u200d",
    "a<rs>   b", "a<rs>\n\nb", "<rs>", "<rs><rs>  <rs>",
    "<both>", " <both> ", "x<both>", "x <both> y", "\t<both>\t<both>\u2000",
    "caf\u00e9", "cafe\u0301", "CAF\u00c9", "r\u00e9sum\u00e9 re\u0301sume\u0301", "cafe\u0301s",
    "\u0120flashmoe\u0120", " flashmoe ", "h\u00e9llo w\u00f6rld", "he\u0301llo wo\u0308rld",
    "<|im_start|>system\n", "<|im_start|>systems", "<|im_start|>user", "<thinking></thinking><think>",
    "hello world hello", "say hello", "shellos", "Hello", "hellohello",
]

EDGE_CHARS = [
    "\x00", "\x01", "\x07", "\x1b", "\x1c", "\x7f", "\x85", "\x9f", "\xa0", "\xad", "\u034f", "\u061c",
    "\u1680", "\u180e", "\u200b", "\u200c", "\u200d", "\u200e", "\u2028", "\u2029", "\u202f", "\u205f",
    "\u2060", "\u3000", "\ufeff", "\ufffd", "\ufffe", "\uffff", "\ue000", "\U000f0000", "\U0010ffff",
    "\u212b", "\u2126", "\u212a", "\u0344", "\u0958", "\u2adc", "\U0001d15e", "\u0f73", "\u0345",
    "\ufb01", "\u017f", "\u0130", "\u1e9e", "\u00df", "\u0301", "\u0323", "\u0302", "\u05b0", "\u0670",
    "\u093c", "\u094d", "\u0e31", "\u302a", "\U0001f3fd", "\ufe0f", "\u20e3",
]


def chardet_samples(rng, per_language=40, max_len=300):
    """Random snippets of real text in many scripts; empty when the corpus is not installed."""
    out = []
    for folder, codec in sorted(CHARDET_CODECS.items()):
        files = sorted(glob.glob(os.path.join(CHARDET, folder, "*")))
        text = ""
        for f in files:
            try:
                with open(f, "rb") as fh:
                    text += fh.read().decode(codec, errors="ignore") + "\n"
            except OSError:
                pass
        if len(text) < 1000:
            continue
        for _ in range(per_language):
            start = rng.randrange(0, len(text) - max_len)
            out.append(text[start:start + rng.randint(5, max_len)])
    return out


def local_text_files():
    """Paths of local prose and code used for bigger samples (may be empty)."""
    paths = sorted(glob.glob("/usr/share/vim/vim90/doc/*.txt"))[:40]
    paths += sorted(glob.glob("/usr/lib/python3.11/*.py"))[:60]
    paths += sorted(glob.glob("/usr/share/common-licenses/*"))
    return [p for p in paths if os.path.isfile(p)]


def file_samples(rng, count, max_len=400):
    out = []
    texts = []
    for p in local_text_files():
        with open(p, "rb") as fh:
            texts.append(fh.read().decode("utf-8", errors="replace"))
    if not texts:
        return out
    for _ in range(count):
        t = rng.choice(texts)
        if len(t) <= 10:
            continue
        start = rng.randrange(0, max(1, len(t) - max_len))
        out.append(t[start:start + rng.randint(1, max_len)])
    return out


def assigned_char(rng):
    """A random assigned, non-surrogate code point (any plane), as a string."""
    while True:
        r = rng.random()
        if r < 0.5:
            cp = rng.randrange(0x20, 0x3000)
        elif r < 0.8:
            cp = rng.randrange(0x3000, 0x10000)
        else:
            cp = rng.randrange(0x10000, 0x30000)
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        if unicodedata.category(ch) != "Cn":
            return ch


def random_mix(rng, length):
    pools = [ENGLISH, CODE, MULTILINGUAL, SPECIALS, EDGE_CHARS]
    parts = []
    while sum(len(p) for p in parts) < length:
        r = rng.random()
        if r < 0.15:
            parts.append(assigned_char(rng))
        elif r < 0.25:
            parts.append(rng.choice([" ", "  ", "\n", "\t", "\r\n", " " * rng.randint(2, 40), "\n" * rng.randint(2, 5)]))
        elif r < 0.35:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        else:
            s = rng.choice(rng.choice(pools))
            a = rng.randrange(0, len(s))
            parts.append(s[a:a + rng.randint(1, 40)])
    return "".join(parts)


def combining_strings(rng, count):
    """Bases followed by random runs of combining marks in random order (stress NFC reordering)."""
    marks = [chr(c) for c in range(0x300, 0x370)] + ["\u0323", "\u0328", "\u0345", "\u05b4", "\u0651",
                                                       "\u093c", "\u094d", "\u0e38", "\u1dc0", "\u20d0",
                                                       "\u302a", "\u3099", "\u309a"]
    bases = list("aeiouAEIOUnNcCsSzZyYwW") + ["\u0391", "\u03b1", "\u0430", "\u0915", "\u304b",
                                              "\u30cf", "\u1100", "\uac00", "\u05d0", "\u0627", " ", "1", "\u00e9"]
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice(bases))
            parts.extend(rng.choice(marks) for _ in range(rng.randint(0, 4)))
        out.append("".join(parts))
    return out


def whitespace_strings(rng):
    out = []
    for n in [1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 100, 257, 1000, 4099]:
        out.append(" " * n)
        out.append("x" + " " * n + "y")
        out.append("\n" * n)
        out.append("a" + "\t" * n + "\n")
    for _ in range(60):
        out.append("".join(rng.choice([" ", "\t", "\n", "\r", "\r\n", "\xa0", "\u3000", "\x0b", "\x0c",
                                       "\x85", "\u2028", "x", "."]) for _ in range(rng.randint(1, 30))))
    return out


def digit_strings(rng):
    out = ["0", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-42", "1e-9",
           "2024-01-31T12:34:56Z", "0x7fffffff", "٣٤٥٦", "１２３", "²³", "v1.2.3-rc4"]
    for _ in range(60):
        out.append(str(rng.randint(0, 10 ** rng.randint(1, 30))) + rng.choice(["", " ", "px", "%", "."]))
    return out


def fixture_strings(seed=20260126):
    rng = random.Random(seed)
    s = []
    s += ENGLISH + CODE + MULTILINGUAL + SPECIAL_TEXTS + EDGE_CHARS + SPECIALS
    s += ["", " ", "a", "\n", "'s", "x's", "x'ſt", "x'Kll", "x'\u212ale", "x'SS", "'İ", "'ll'LL'lL"]
    s += [e + c for e in ["a", " ", "'", ".", "1", "\n"] for c in EDGE_CHARS]
    s += [c + c + "." + c for c in EDGE_CHARS]
    s += whitespace_strings(rng)
    s += digit_strings(rng)
    s += combining_strings(rng, 250)
    s += chardet_samples(rng)
    s += file_samples(rng, 300)
    s += [random_mix(rng, rng.randint(1, 120)) for _ in range(700)]
    s += FLAG_TEXTS
    s += ["".join(rng.choice(FLAG_TEXTS + [" ", "x", "\n", "\u00e9"]) for _ in range(rng.randint(2, 6)))
          for _ in range(120)]
    s += [" ".join(rng.choice(SPECIALS + ENGLISH[:3] + MULTILINGUAL[:3]) for _ in range(rng.randint(1, 5)))
          for _ in range(100)]
    return s


def bench_text(target_bytes=4 << 20, seed=7):
    """A few MB of mixed text: prose and code from local files, real multilingual snippets, mixes."""
    rng = random.Random(seed)
    parts = []
    size = 0
    files = local_text_files()
    texts = []
    for p in files:
        with open(p, "rb") as fh:
            texts.append(fh.read().decode("utf-8", errors="replace"))
    multilingual = chardet_samples(rng, per_language=200, max_len=2000) or MULTILINGUAL
    while size < target_bytes:
        r = rng.random()
        if r < 0.6 and texts:
            t = rng.choice(texts)
            start = rng.randrange(0, max(1, len(t) - 8000))
            chunk = t[start:start + 8000]
        elif r < 0.85:
            chunk = rng.choice(multilingual)
        else:
            chunk = random_mix(rng, 2000)
        parts.append(chunk)
        size += len(chunk.encode("utf-8"))
    return "\n".join(parts)
