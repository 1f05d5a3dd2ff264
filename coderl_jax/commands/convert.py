"""`coderl convert from-hf|to-hf`: HF/PyTorch T5 (CodeT5, CodeRL critic) <-> model checkpoints."""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert checkpoints between HF/PyTorch and orbax",
                       description=__doc__)
    kinds = p.add_subparsers(dest="direction", metavar="DIRECTION", parser_class=type(p))

    f = kinds.add_parser("from-hf", help="HF T5/CodeT5 folder (or CodeRL critic) -> checkpoint",
                         description="Read config.json + model.safetensors (or pytorch_model.bin, "
                                     "which needs torch) and write an orbax model checkpoint.")
    f.add_argument("--hf-dir", required=True, help="HF model folder (config.json + weights)")
    f.add_argument("--out", required=True, help="model checkpoint folder to write")
    f.add_argument("--critic", action="store_true",
                   help="the folder is a CodeRL critic: also read its error_head.* weights")
    f.add_argument("--scan-layers", action="store_true",
                   help="store the layers stacked for nn.scan (the layout scan_layers=True uses)")
    f.set_defaults(func=run_from_hf)

    t = kinds.add_parser("to-hf", help="checkpoint -> HF folder loadable by transformers",
                         description="Write config.json + model.safetensors that "
                                     "transformers.T5ForConditionalGeneration.from_pretrained "
                                     "loads (critics also get CodeRL's error_head.* keys). "
                                     "Needs no torch.")
    t.add_argument("--checkpoint", required=True, help="model checkpoint folder")
    t.add_argument("--out", required=True, help="HF folder to write")
    t.set_defaults(func=run_to_hf)
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def _describe(config, critic) -> str:
    kind = f"critic ({critic.num_classes} classes)" if critic is not None else "T5"
    return (f"{kind}: d_model {config.d_model}, {config.num_encoder_layers}+"
            f"{config.num_decoder_layers} layers, {config.num_heads} heads, "
            f"vocab {config.vocab_size}")


def _bar(total: int):
    """A stage progress bar on stderr (off when stderr is not a terminal)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc="convert", unit="stage", disable=None, file=sys.stderr,
               leave=False)

    def step(stage: str) -> None:
        bar.set_postfix_str(f"{stage} done")
        bar.update(1)

    return bar, step


def run_from_hf(args) -> int:
    from coderl_jax import convert

    bar, step = _bar(3)
    with bar:
        config, critic = convert.from_hf(args.hf_dir, args.out, critic=args.critic,
                                         scan_layers=args.scan_layers, progress=step)
    print(f"wrote {args.out} ({_describe(config, critic)})")
    return 0


def run_to_hf(args) -> int:
    from coderl_jax import convert

    bar, step = _bar(2)
    with bar:
        config, critic = convert.to_hf(args.checkpoint, args.out, progress=step)
    print(f"wrote {args.out} ({_describe(config, critic)})")
    if not config.tie_word_embeddings:
        print("note: this model has its own lm_head; transformers >= 5 ties lm_head to the "
              "embedding when loading, so load it with transformers 4.x", file=sys.stderr)
    return 0

