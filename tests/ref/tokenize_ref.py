#!/usr/bin/env python3
"""Reference encodings from Hugging Face `tokenizers`, for the C++ WordPiece parity tests.

Encode mode (used by tests/unit/text_tokenizer_test.cpp):

    tokenize_ref.py --model DIR --task sst2|mrpc --input TSV --out FILE [--max-length 128]

encodes every row of a GLUE TSV with `Tokenizer.from_file(DIR/tokenizer.json)` (truncation
longest_first to --max-length, no padding) and writes one line per row: the input ids separated
by spaces, a tab, then the token type ids. SST-2 uses the `sentence` column, MRPC the
`#1 String` / `#2 String` pair.

The TSV is split exactly like the C++ test splits it, so both sides see the same strings: the
bytes are decoded as strict UTF-8, a leading BOM is dropped, rows are split on '\\n' only (not on
the other characters str.splitlines() treats as line ends), one trailing '\\r' is removed, empty
rows are skipped, the first row is the header and cells are split on '\\t'.

Table mode:

    tokenize_ref.py --dump-unicode-tables

prints the C++ override tables used by src/text/tokenizer.cpp. `tokenizers` classifies
characters with Unicode 8-era tables (crate unicode_categories) and an older normalization crate,
while utf8proc follows a recent Unicode; the tables list every code point on which the two
disagree, so the C++ side reproduces `tokenizers` exactly. Rerun it after a utf8proc upgrade and
paste the output over the generated block in tokenizer.cpp.
"""
import argparse
import ctypes
import ctypes.util
import sys
from pathlib import Path


def read_rows(path):
    text = Path(path).read_bytes().decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = []
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        if line:
            rows.append(line.split("\t"))
    if not rows:
        sys.exit(f"{path}: no header row")
    return rows[0], rows[1:]


def column(header, name, path):
    if name not in header:
        sys.exit(f"{path}: no column '{name}' in header {header}")
    return header.index(name)


def encode(args):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(args.model) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(args.max_length, strategy="longest_first")
    header, rows = read_rows(args.input)
    if args.task == "sst2":
        ca = column(header, "sentence", args.input)
        inputs = [r[ca] for r in rows]
    else:
        ca = column(header, "#1 String", args.input)
        cb = column(header, "#2 String", args.input)
        inputs = [(r[ca], r[cb]) for r in rows]
    encodings = tok.encode_batch(inputs)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for e in encodings:
            f.write(" ".join(map(str, e.ids)) + "\t" + " ".join(map(str, e.type_ids)) + "\n")


# --- table mode ----------------------------------------------------------------------------

UTF8PROC_CATEGORIES = ["Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No",
                       "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs",
                       "Zl", "Zp", "Cc", "Cf", "Cs", "Co"]
UTF8PROC_STABLE = 1 << 1
UTF8PROC_DECOMPOSE = 1 << 4


def load_utf8proc():
    name = ctypes.util.find_library("utf8proc") or "libutf8proc.so.2"
    lib = ctypes.CDLL(name)
    lib.utf8proc_category.restype = ctypes.c_int
    lib.utf8proc_category.argtypes = [ctypes.c_int32]
    lib.utf8proc_tolower.restype = ctypes.c_int32
    lib.utf8proc_tolower.argtypes = [ctypes.c_int32]
    lib.utf8proc_decompose_char.restype = ctypes.c_ssize_t
    lib.utf8proc_decompose_char.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_int32),
                                            ctypes.c_ssize_t, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
    lib.utf8proc_version.restype = ctypes.c_char_p
    return lib


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def dump_tables():
    from tokenizers import normalizers, pre_tokenizers
    import tokenizers

    lib = load_utf8proc()
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                       strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                       strip_accents=True, lowercase=False)
    lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                       strip_accents=False, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    buf = (ctypes.c_int32 * 32)()
    boundclass = ctypes.c_int(0)

    def cat(c):
        return UTF8PROC_CATEGORIES[lib.utf8proc_category(c)]

    def decompose(c):
        n = lib.utf8proc_decompose_char(c, buf, 32, UTF8PROC_DECOMPOSE | UTF8PROC_STABLE,
                                        ctypes.byref(boundclass))
        assert 0 < n <= 32, (hex(c), n)
        return [buf[i] for i in range(n)]

    def base_whitespace(c):
        return c in (9, 10, 13, 32) or cat(c) in ("Zs", "Zl", "Zp")

    ctl_on, ctl_off, pun_on, pun_off, mn_on, mn_off, keep, lower_delta = [], [], [], [], [], [], [], []
    problems = []
    codepoints = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    # Pass 1: per-code-point classes.
    for c in codepoints:
        ch = chr(c)
        r = clean.normalize_str("x" + ch + "y")
        if c not in (0, 0xFFFD):
            hf_ctl = r == "xy"
            base_ctl = cat(c) in ("Cc", "Cf", "Co", "Cs") and c not in (9, 10, 13)
            if hf_ctl != base_ctl:
                (ctl_on if hf_ctl else ctl_off).append(c)
        if (r == "x y") != (base_whitespace(c) and c != 32) and c != 32:
            problems.append(f"whitespace U+{c:04X}")
        if not base_whitespace(c):
            w = [p for p, _ in pre.pre_tokenize_str("x" + ch + "y")]
            hf_p = len(w) == 3 and w[1] == ch
            base_p = 33 <= c <= 47 or 58 <= c <= 64 or 91 <= c <= 96 or 123 <= c <= 126 or \
                cat(c).startswith("P")
            if hf_p != base_p:
                (pun_on if hf_p else pun_off).append(c)
        d = decompose(c)
        if d == [c]:
            hf_mn = strip.normalize_str(ch) == ""
            if hf_mn != (cat(c) == "Mn"):
                (mn_on if hf_mn else mn_off).append(c)
        low = lower.normalize_str(ch)
        if c != 0x130 and low != chr(lib.utf8proc_tolower(c)):
            if len(low) != 1:
                problems.append(f"lowercase U+{c:04X} -> {len(low)} chars")
            else:
                lower_delta.append((c, ord(low) - c))
    mn = (set(mn_on), set(mn_off))

    def is_mn(c):
        return c in mn[0] or (cat(c) == "Mn" and c not in mn[1])

    # Pass 2: decompositions, judged with the Mn overrides in place.
    for c in codepoints:
        d = decompose(c)
        if d == [c]:
            continue
        hf = strip.normalize_str(chr(c))
        mine = "".join(chr(x) for x in d if not is_mn(x))
        if hf != mine:
            if hf == ("" if is_mn(c) else chr(c)):
                keep.append(c)
            else:
                problems.append(f"decomposition U+{c:04X}")
    if problems:
        sys.exit("cannot express as overrides: " + ", ".join(problems[:50]))

    delta_ranges = []
    for c, d in lower_delta:
        if delta_ranges and delta_ranges[-1][1] == c - 1 and delta_ranges[-1][2] == d:
            delta_ranges[-1][1] = c
        else:
            delta_ranges.append([c, c, d])

    def emit(name, cps, why):
        rs = ranges(cps)
        print(f"// {why}")
        print(f"constexpr CodeRange {name}[] = {{")
        items = [f"{{0x{a:04X}, 0x{b:04X}}}" for a, b in rs] or ["{0x110000, 0x110000}"]
        line = " "
        for it in items:
            if len(line) + len(it) + 2 > 100:
                print(line.rstrip())
                line = " "
            line += " " + it + ","
        print(line.rstrip())
        print("};")

    ver = lib.utf8proc_version().decode()
    print(f"// BEGIN GENERATED by tests/ref/tokenize_ref.py --dump-unicode-tables "
          f"(tokenizers {tokenizers.__version__}, utf8proc {ver})")
    emit("kControlOn", ctl_on, "Removed by tokenizers' clean_text although utf8proc says not Cc/Cf/Co/Cs.")
    emit("kControlOff", ctl_off, "utf8proc says Cf, tokenizers keeps them (assigned after Unicode 8).")
    emit("kPunctOn", pun_on, "Split as punctuation by tokenizers although utf8proc says not P*.")
    emit("kPunctOff", pun_off, "utf8proc says P*, tokenizers does not split them.")
    emit("kMarkOn", mn_on, "Stripped as Mn by tokenizers although utf8proc says another category.")
    emit("kMarkOff", mn_off, "utf8proc says Mn, tokenizers keeps them when stripping accents.")
    emit("kNoDecompose", keep, "utf8proc decomposes them, tokenizers' NFD leaves them whole.")
    print("// Lower-case mappings utf8proc lacks: code points lo..hi map to cp + delta.")
    print("constexpr LowerRange kLowerExtra[] = {")
    for a, b, d in delta_ranges:
        print(f"    {{0x{a:04X}, 0x{b:04X}, {d}}},")
    if not delta_ranges:
        print("    {0x110000, 0x110000, 0},")
    print("};")
    print("// END GENERATED")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--task", choices=["sst2", "mrpc"])
    p.add_argument("--input")
    p.add_argument("--out")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--dump-unicode-tables", action="store_true")
    args = p.parse_args()
    if args.dump_unicode_tables:
        dump_tables()
        return
    missing = [n for n in ("model", "task", "input", "out") if getattr(args, n) is None]
    if missing:
        p.error("missing " + ", ".join("--" + m for m in missing))
    encode(args)


if __name__ == "__main__":
    main()
