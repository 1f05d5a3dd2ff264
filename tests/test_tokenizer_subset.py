"""CodeT5's tokenizer restricted to a corpus (the demo's vocabulary): the corpus tokenizes as
with CodeT5, other text still round-trips, and a model checkpoint carries the tokenizer into
the commands and into its HF export, where transformers' RobertaTokenizer reads it."""
import json

import jax
import numpy as np
import pytest

from coderl_jax import checkpoint_io, convert
from coderl_jax.config import model_preset
from coderl_jax.data.demo import load_demo
from coderl_jax.demo import corpus_texts
from coderl_jax.models import t5
from coderl_jax.tokenizer import load_tokenizer
from coderl_jax.tokenizer_subset import write_subset


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    full = load_tokenizer()
    texts = corpus_texts(load_demo("train"))
    out = write_subset(full, texts, tmp_path_factory.mktemp("tok") / "tokenizer")
    return full, load_tokenizer(out), texts


def test_subset_tokenizes_its_corpus_as_codet5(subset):
    full, sub, texts = subset
    assert 1000 < sub.vocab_size < 3000 and full.vocab_size == 32100
    assert (sub.pad_id, sub.bos_id, sub.eos_id, sub.unk_id, sub.mask_id) == (0, 1, 2, 3, 4)
    for text in texts:
        assert ([sub.id_to_token(i) for i in sub.encode(text)]
                == [full.id_to_token(i) for i in full.encode(text)])


def test_subset_still_encodes_any_text(subset):
    full, sub, _ = subset
    for text in [p.question for p in load_demo("heldout")] + ["héllo ✓\r\n\tλ = 3", "zzqx"]:
        ids = sub.encode(text)
        assert max(ids) < sub.vocab_size and sub.decode(ids) == text
    word = " constructor"  # one CodeT5 token, absent from the demo corpus: pieces of it instead
    assert len(full.encode(word)) == 3 and len(sub.encode(word)) > 3


def test_checkpoint_carries_its_tokenizer_to_commands_and_export(subset, tmp_path):
    _, sub, _ = subset
    config = model_preset("tiny", vocab_size=sub.vocab_size)
    params = t5.init_params(config, jax.random.key(0))
    ckpt = checkpoint_io.save_model(tmp_path / "model", params, config, tokenizer=sub.path)
    assert checkpoint_io.tokenizer_path(ckpt) == ckpt / "tokenizer"
    assert checkpoint_io.tokenizer_path(tmp_path) == ckpt / "tokenizer"  # a training workdir
    assert checkpoint_io.model_tokenizer(None, ckpt).vocab_size == sub.vocab_size
    assert checkpoint_io.model_tokenizer(None, None).vocab_size == 32100  # the packaged one
    checkpoint_io.save_model(ckpt, params, config)  # replacing it drops the old tokenizer
    assert checkpoint_io.tokenizer_path(ckpt) is None
    checkpoint_io.save_model(ckpt, params, config, tokenizer=sub.path)

    out = tmp_path / "hf"
    convert.to_hf(ckpt, out)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == sub.vocab_size
    transformers = pytest.importorskip("transformers")
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    code = "def f(n):\n    return n + 1\n"
    assert hf_tok(code)["input_ids"] == sub.encode(code)
    assert np.array_equal(hf_tok.convert_tokens_to_ids(["<pad>", "<s>", "</s>"]), [0, 1, 2])
