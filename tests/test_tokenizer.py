"""CodeT5 tokenizer: ids equal to transformers' RobertaTokenizer (+ CodeT5's 100 extra ids) and to
an independent pure-Python byte-level BPE on real programs and questions; exact round trips."""
import json
import time
from functools import lru_cache
from pathlib import Path

import pytest

from coderl_jax.errors import UserError
from coderl_jax.tokenizer import load_tokenizer

from conftest import TOKENIZER_DIR, data_path

SPECIAL_TEXTS = [
    "def f(x):\r\n\treturn x  # héllo ✓ 日本 🤗",
    "a <mask> b  <mask>c\n<mask>",
    "x <extra_id_1> y<extra_id_99>z <extra_id_0>",
    "<s>hi</s> <pad><unk>",
    " leading space\n\n\n  trailing  ",
    "\t\tTabs\tand\u00a0nbsp and \u2028 line sep",
    "",
    "<extra_id_100> is not a token",
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(TOKENIZER_DIR)


@pytest.fixture(scope="module")
def reference():
    """transformers.RobertaTokenizer as CodeT5 uses it. In transformers 5,
    `RobertaTokenizer(vocab_file, merges_file)` silently builds an empty 5-token vocabulary, so
    the files go in as `vocab=` / `merges=` (what `from_pretrained` does); the mask token gets
    transformers 4's `lstrip=True` (5 no longer sets it for vocab/merges folders)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import AddedToken

    folder = TOKENIZER_DIR
    ref = transformers.RobertaTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
        mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False,
                              special=True))
    assert len(ref) == 32000
    ref.add_special_tokens(
        {"additional_special_tokens": [f"<extra_id_{i}>" for i in range(99, -1, -1)]})
    assert len(ref) == 32100
    return ref


@pytest.fixture(scope="module")
def mbpp_rows():
    path = data_path("mbpp", "mbpp.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def apps_texts():
    root = data_path("apps")
    texts = [p.read_text(encoding="utf-8") for p in sorted(root.glob("*/*/question.txt"))]
    for p in sorted(root.glob("train/*/solutions.json")):
        texts += json.loads(p.read_text(encoding="utf-8"))[:10]
    return texts


# ------------------------------------------------------------------ pure-Python byte-level BPE
@lru_cache(maxsize=None)
def _byte_map() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


class PyBPE:
    """GPT-2's BPE written out in Python: split with GPT-2's regex, map bytes, merge by rank."""

    def __init__(self, folder):
        import regex

        self.vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
        merges = [tuple(l.split(" ")) for l in lines if l and not l.startswith("#version")]
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
                                 r"""|\s+(?!\S)|\s+""")
        self.cache: dict[str, list[str]] = {}

    def bpe(self, word: str) -> list[str]:
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i)
                     for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, at = min(pairs)
            if rank == 1 << 30:
                break
            first, second = parts[at], parts[at + 1]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        m = _byte_map()
        ids = [self.vocab["<s>"]]
        for piece in self.pat.findall(text):
            word = "".join(m[b] for b in piece.encode("utf-8"))
            ids += [self.vocab[t] for t in self.bpe(word)]
        return ids + [self.vocab["</s>"]]


# ------------------------------------------------------------------ tests
def test_special_ids_and_vocab(tok):
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.vocab_size == len(tok) == 32100
    assert tok.token_to_id("<extra_id_0>") == 32099
    assert tok.token_to_id("<extra_id_99>") == 32000
    assert tok.encode("") == [1, 2]
    assert tok.encode("def", add_special_tokens=False) == [tok.token_to_id("def")]


def test_matches_roberta_tokenizer_on_special_cases(tok, reference):
    for text in SPECIAL_TEXTS:
        assert tok.encode(text) == reference.encode(text), text
        ids = tok.encode(text)
        assert tok.decode(ids) == reference.decode(ids, skip_special_tokens=True), text
        assert tok.decode(ids, skip_special_tokens=False) == \
            reference.decode(ids, skip_special_tokens=False), text


def test_matches_roberta_tokenizer_on_real_programs(tok, reference, mbpp_rows, apps_texts):
    texts = [r["code"] for r in mbpp_rows] + [r["text"] for r in mbpp_rows] + \
        [t for r in mbpp_rows for t in r["test_list"] + r["challenge_test_list"]] + \
        [r["test_setup_code"] for r in mbpp_rows if r["test_setup_code"]] + apps_texts
    assert len(texts) > 500
    ours = tok.batch_encode(texts)
    theirs = reference(texts)["input_ids"]
    mismatched = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert not mismatched, f"{len(mismatched)} texts differ, first: {texts[mismatched[0]]!r}"
    assert ours == [tok.encode(t) for t in texts]  # batch == one by one


def test_matches_pure_python_bpe(tok, mbpp_rows, apps_texts):
    ref = PyBPE(TOKENIZER_DIR)
    texts = [r["code"] for r in mbpp_rows[::5]] + apps_texts[:40] + SPECIAL_TEXTS[:1] + \
        SPECIAL_TEXTS[4:6]
    for text in texts:
        assert tok.encode(text) == ref.encode(text), text[:200]


def test_decode_round_trips_code_exactly(tok, mbpp_rows, apps_texts):
    texts = [r["code"] for r in mbpp_rows] + apps_texts + [
        "x = 1\r\n\tif x:\r\n\t\tprint('ünïcödé ✓ 日本語 😀')\r\n", "  \n\n\t \r", "a  .b , 's"]
    assert any("\r\n" in t for t in texts) and any("\t" in t for t in texts)
    decoded = tok.batch_decode(tok.batch_encode(texts))
    for text, back in zip(texts, decoded):
        assert back == text
    # no transformers-4-style clean-up of spaces before punctuation
    assert tok.decode(tok.encode("f(a , b) . c 's")) == "f(a , b) . c 's"


def test_decode_skips_special_tokens(tok):
    ids = [0, 1] + tok.encode("x = 1", add_special_tokens=False) + [32099, 4, 2, 0, 0]
    assert tok.decode(ids) == "x = 1"
    assert (tok.decode(ids, skip_special_tokens=False)
            == "<pad><s>x = 1<extra_id_0><mask></s><pad><pad>")
    import numpy as np

    assert tok.decode(np.array(ids, dtype=np.int32)) == "x = 1"


def test_batch_encode_speed(tok, mbpp_rows):
    texts = [r["text"] + "\n" + r["code"] for r in mbpp_rows]
    start = time.perf_counter()
    ids = tok.batch_encode(texts)
    seconds = time.perf_counter() - start
    n = sum(map(len, ids))
    print(f"batch_encode: {len(texts)} texts, {n} tokens in {seconds:.3f} s")
    assert seconds < 2.0  # the 95 MBPP problems of tests/data: milliseconds normally


def test_hf_folder_forms(tok, tmp_path):
    folder = TOKENIZER_DIR
    # an HF-style folder: vocab + merges + added_tokens.json (CodeT5's published layout)
    hf = tmp_path / "hf"
    hf.mkdir()
    for name in ("vocab.json", "merges.txt"):
        (hf / name).write_bytes((folder / name).read_bytes())
    (hf / "added_tokens.json").write_text(
        json.dumps({f"<extra_id_{i}>": 32099 - i for i in range(100)}))
    hf_tok = load_tokenizer(hf)
    # a tokenizer.json-only folder
    tj = tmp_path / "tj"
    tj.mkdir()
    tok.backend.save(str(tj / "tokenizer.json"))
    tj_tok = load_tokenizer(tj)
    for text in SPECIAL_TEXTS:
        assert hf_tok.encode(text) == tok.encode(text) == tj_tok.encode(text)
    assert tj_tok.vocab_size == hf_tok.vocab_size == 32100


def test_default_path_from_environment(monkeypatch, tok):
    monkeypatch.setenv("CODERL_TOKENIZER", str(TOKENIZER_DIR))
    assert load_tokenizer().encode("print(1)") == tok.encode("print(1)")


def test_default_is_the_packaged_tokenizer(monkeypatch, tmp_path):
    """No argument and no $CODERL_TOKENIZER: the copy shipped inside the package (with its
    licence beside it); without that copy, a one-line error that says what to pass."""
    from coderl_jax import tokenizer as module

    monkeypatch.delenv("CODERL_TOKENIZER", raising=False)
    tok = load_tokenizer()
    assert tok.path == TOKENIZER_DIR
    assert TOKENIZER_DIR.is_relative_to(Path(module.__file__).parent)  # inside the package
    assert tok.vocab_size == 32100 and tok.encode("print(1)") == [1, 1188, 12, 21, 13, 2]
    assert "Salesforce" in (TOKENIZER_DIR / "LICENSE-CodeT5.txt").read_text()
    monkeypatch.setattr(module, "PACKAGED", tmp_path / "gone")
    with pytest.raises(UserError, match=r"packaged CodeT5 tokenizer is missing.*--tokenizer DIR"):
        load_tokenizer()


def test_bad_tokenizer_folders(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(UserError, match="neither vocab.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text("{not json")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(UserError, match="vocab.json.*invalid JSON"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    with pytest.raises(UserError, match="no <pad> token"):
        load_tokenizer(tmp_path)
    monkeypatch.setenv("CODERL_TOKENIZER", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="not found"):
        load_tokenizer()
