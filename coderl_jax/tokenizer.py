"""CodeT5's byte-level BPE tokenizer, built on the `tokenizers` library (no `transformers` needed).

CodeT5 loads its tokenizer as `transformers.RobertaTokenizer`: a GPT-2 style byte-level BPE
(32000 entries, ids 0-4 = `<pad> <s> </s> <unk> <mask>`) plus 100 added `<extra_id_N>` tokens,
`<extra_id_99>` = 32000 ... `<extra_id_0>` = 32099 (T5's order), so the vocabulary holds 32100.
This module reproduces RobertaTokenizer's behaviour:
  - `encode(text)` = `<s>` + BPE(text) + `</s>` (RobertaProcessing), no prefix space;
  - special tokens written literally in the text (`<s>`, `<extra_id_3>` ...) become their ids;
    `<mask>` swallows the spaces before it (RobertaTokenizer's `lstrip=True` on the mask token);
  - `decode(ids, skip_special_tokens=True)` drops special tokens and maps bytes back to text.
Unlike transformers 4.x's default `clean_up_tokenization_spaces=True`, decoding never rewrites
spaces around punctuation: decoded programs are byte-for-byte what the tokens spell, so
`decode(encode(code)) == code` for any string (`\\r\\n`, tabs and unicode included).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from coderl_jax.errors import UserError

PAD, BOS, EOS, UNK, MASK = "<pad>", "<s>", "</s>", "<unk>", "<mask>"
NUM_EXTRA_IDS = 100
_ENV = "CODERL_TOKENIZER"


# CodeT5's vocab.json + merges.txt shipped inside the package (BSD-3-Clause; SOURCE.md there).
PACKAGED = Path(__file__).resolve().parent / "assets" / "codet5_tokenizer"


def _default_path() -> Path:
    """$CODERL_TOKENIZER when set, else the tokenizer shipped with the package."""
    if os.environ.get(_ENV):
        return Path(os.environ[_ENV])
    if not (PACKAGED / "vocab.json").is_file() or not (PACKAGED / "merges.txt").is_file():
        raise UserError(
            f"the packaged CodeT5 tokenizer is missing ({PACKAGED}: was coderl-jax installed "
            f"without its package data?); pass --tokenizer DIR (a folder with CodeT5's "
            f"vocab.json and merges.txt) or set ${_ENV}")
    return PACKAGED


class CodeT5Tokenizer:
    """CodeT5's tokenizer (see module docstring); wraps a `tokenizers.Tokenizer`."""

    def __init__(self, tokenizer, path: str | Path | None = None):
        self._tok = tokenizer
        self.path = None if path is None else Path(path)
        self.pad_id = self._required_id(PAD)
        self.bos_id = self._required_id(BOS)
        self.eos_id = self._required_id(EOS)
        self.unk_id = self._required_id(UNK)
        self.mask_id = self._required_id(MASK)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def _required_id(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        if i is None:
            where = f" in {self.path}" if self.path else ""
            raise UserError(f"tokenizer{where} has no {token} token; is it CodeT5's vocabulary?")
        return i

    # ----------------------------------------------------------------------------- encoding
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; with special tokens: `<s> ... </s>` (RobertaTokenizer)."""
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def batch_encode(self, texts: Sequence[str], add_special_tokens: bool = True
                     ) -> list[list[int]]:
        """`encode` of many texts at once (parallel in the Rust library)."""
        if not texts:
            return []
        encs = self._tok.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)
        return [e.ids for e in encs]

    def tokenize(self, text: str) -> list[str]:
        """BPE token strings of `text` (no special tokens), e.g. `['def', 'Ġf']`."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    # ----------------------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; special tokens (pad, bos, eos, mask, extra ids) dropped by default."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = True
                     ) -> list[str]:
        seqs = [[int(i) for i in ids] for ids in batch]
        return self._tok.decode_batch(seqs, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self._tok.id_to_token(int(i))

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CodeT5Tokenizer(vocab_size={self.vocab_size}, path={str(self.path)!r})"

    @property
    def backend(self):
        """The underlying `tokenizers.Tokenizer`."""
        return self._tok


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from e
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from e


def _extra_id_table(folder: Path, base: int) -> list[tuple[str, int]]:
    """The `<extra_id_N>` tokens and ids: from added_tokens.json when the folder has one, else
    CodeT5's layout (`<extra_id_99>` = base ... `<extra_id_0>` = base + 99)."""
    added = folder / "added_tokens.json"
    if added.is_file():
        table = _read_json(added)
        if not isinstance(table, dict):
            raise UserError(f"{added}: expected a JSON object of token -> id")
        return sorted(((str(t), int(i)) for t, i in table.items()), key=lambda x: x[1])
    return [(f"<extra_id_{NUM_EXTRA_IDS - 1 - k}>", base + k) for k in range(NUM_EXTRA_IDS)]


def build_from_vocab_merges(folder: Path):
    """A `tokenizers.Tokenizer` equal to RobertaTokenizer(vocab.json, merges.txt) + extra ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab = _read_json(vocab_file)
    if not isinstance(vocab, dict) or not vocab:
        raise UserError(f"{vocab_file}: expected a non-empty JSON object of token -> id")
    try:
        model = BPE.from_file(str(vocab_file), str(merges_file), dropout=None,
                              continuing_subword_prefix="", end_of_word_suffix="",
                              fuse_unk=False)
    except Exception as e:  # the Rust library reports malformed files as plain exceptions
        raise UserError(f"cannot read the BPE files in {folder}: {e}") from e
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    for token in (PAD, BOS, EOS, UNK, MASK):
        if token not in vocab:
            raise UserError(f"{vocab_file} has no {token} token; is it CodeT5's vocabulary?")
    # RobertaTokenizer: every special token is matched whole in raw text; the mask token also
    # absorbs the whitespace on its left (AddedToken(mask, lstrip=True)).
    specials = [AddedToken(t, special=True, normalized=False) for t in (PAD, BOS, EOS, UNK)]
    specials.append(AddedToken(MASK, lstrip=True, special=True, normalized=False))
    tok.add_special_tokens(specials)
    base = max(vocab.values()) + 1
    extras = _extra_id_table(folder, base)
    ids = [i for _, i in extras]
    if ids != list(range(base, base + len(ids))):
        raise UserError(f"{folder}: added token ids {ids[:3]}... must follow vocab.json's last id "
                        f"({base - 1}) without gaps")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in extras])
    tok.post_processor = processors.RobertaProcessing(
        (EOS, vocab[EOS]), (BOS, vocab[BOS]), trim_offsets=True, add_prefix_space=False)
    for token, i in extras:
        if tok.token_to_id(token) != i:  # the library assigns ids in order; check, never assume
            raise UserError(f"{folder}: {token} got id {tok.token_to_id(token)}, expected {i}")
    return tok


def load_tokenizer(path: str | Path | None = None) -> CodeT5Tokenizer:
    """CodeT5's tokenizer from a folder with vocab.json + merges.txt (optionally an HF folder's
    added_tokens.json) or a `tokenizer.json`; `None`: $CODERL_TOKENIZER, else the packaged one."""
    from tokenizers import Tokenizer

    folder = Path(path) if path is not None else _default_path()
    if folder.is_file() and folder.name == "tokenizer.json":
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"tokenizer folder not found: {folder}")
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return CodeT5Tokenizer(build_from_vocab_merges(folder), folder)
    if (folder / "tokenizer.json").is_file():
        try:
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:
            raise UserError(f"cannot read {folder / 'tokenizer.json'}: {e}") from e
        return CodeT5Tokenizer(tok, folder)
    raise UserError(f"{folder} holds neither vocab.json + merges.txt nor tokenizer.json")
