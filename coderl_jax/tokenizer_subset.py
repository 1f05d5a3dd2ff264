"""CodeT5's tokenizer restricted to the tokens a corpus uses, with the ids renumbered.

`write_subset(tokenizer, texts, out)` keeps every token that CodeT5's BPE produces on `texts`,
every token those are merged from (recursively), the 256 byte-level symbols and the five
special tokens, and writes vocab.json + merges.txt (the merges among kept tokens, in CodeT5's
order) + added_tokens.json (no `<extra_id_N>`) to `out`, which `load_tokenizer(out)` reads.
Ids follow CodeT5's order: `<pad> <s> </s> <unk> <mask>` stay 0-4. On the corpus the subset
tokenizes exactly as CodeT5 does (every merge that fires there is kept); other text falls back to
shorter pieces, down to single bytes, so any string still encodes and decodes to itself.
A model with this vocabulary spends its embedding and LM head on ~2k rows instead of 32100.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from coderl_jax.errors import UserError
from coderl_jax.tokenizer import BOS, EOS, MASK, PAD, UNK, CodeT5Tokenizer


def _byte_symbols() -> list[str]:
    """The 256 characters GPT-2's byte-level BPE writes bytes as."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _merges(folder: Path) -> list[tuple[str, str]]:
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
    pairs = []
    for line in lines:
        if not line or line.startswith("#version"):
            continue
        a, b = line.split(" ")
        pairs.append((a, b))
    return pairs


def write_subset(tokenizer: CodeT5Tokenizer, texts: Iterable[str], out: str | Path) -> Path:
    """Write the subset of `tokenizer` that `texts` use to folder `out` (see module docstring)."""
    if tokenizer.path is None or not (tokenizer.path / "merges.txt").is_file():
        raise UserError("a vocabulary subset needs a tokenizer folder with vocab.json and "
                        "merges.txt (CodeT5's)")
    vocab = tokenizer.get_vocab()
    merges = _merges(tokenizer.path)
    parts = {}
    for a, b in merges:
        parts.setdefault(a + b, (a, b))
    used = {tokenizer.id_to_token(i) for ids in tokenizer.batch_encode(list(texts), False)
            for i in ids}
    keep = {PAD, BOS, EOS, UNK, MASK, *_byte_symbols()}
    todo = list(used)
    while todo:
        token = todo.pop()
        if token in keep:
            continue
        keep.add(token)
        todo.extend(parts.get(token, ()))
    missing = sorted(t for t in keep if t not in vocab)
    if missing:
        raise UserError(f"{tokenizer.path}: the byte-level symbols {missing[:3]}... are not in "
                        "its vocabulary; is it CodeT5's?")
    ordered = sorted(keep, key=lambda t: vocab[t])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(ordered)},
                                               ensure_ascii=False), encoding="utf-8")
    kept = [f"{a} {b}" for a, b in merges if a in keep and b in keep and a + b in keep]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(kept) + "\n", encoding="utf-8")
    (out / "added_tokens.json").write_text("{}\n", encoding="utf-8")
    return out
