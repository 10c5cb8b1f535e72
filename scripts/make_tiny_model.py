#!/usr/bin/env python
"""Make a tiny ALBERT question-answering model and a WordPiece tokenizer trained on your data.

For the demo and the tests: nothing is downloaded from a model hub.

    python scripts/make_tiny_model.py --train-file data/demo/train.json --out outputs/demo/tiny-albert
    python scripts/make_tiny_model.py --train-file data/demo/train.json --out DIR --vocab-size 2000 --hidden-size 64

The folder it writes loads with AutoTokenizer / AutoModelForQuestionAnswering.from_pretrained.
The tokenizer is saved as a plain fast tokenizer (tokenizer.json): transformers 5.x would replace
a custom normalizer if it were saved as AlbertTokenizer.

Reproducible: the same data, sizes and --seed give byte-identical tokenizer.json and model.safetensors
on one machine, whatever PYTHONHASHSEED (tests/test_make_tiny_model.py runs it twice and compares).
`tokenizers`' WordPiece trainer alone does not: it gives each continuation piece ("##e") its id in the
order it first meets the piece while walking a Rust HashMap of words, whose hasher is seeded at random
in every process, and it breaks ties between equally frequent merges by those ids. So which merges
make the vocabulary changed from run to run (7 runs on squad2-dev-normans-rhine.json, vocab 1500:
7 different tokenizer.json), and with it the demo's F1 (89.8, 90.38 or 90.99 for one seed).
`train_tokenizer` hands the trainer every continuation piece up front, in sorted order.
"""

import argparse
import json
import os
import sys

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def squad_texts(path):
    """Every context and question of a SQuAD-format JSON file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)["data"]
    for article in data:
        for paragraph in article["paragraphs"]:
            yield paragraph["context"]
            for qa in paragraph["qas"]:
                yield qa["question"]


def continuation_pieces(words):
    """The WordPiece pieces "##c" for every character c seen after the first of a word, sorted (pure).

    >>> continuation_pieces(["the", "cat", "a"])
    ['##a', '##e', '##h', '##t']
    """
    return sorted({"##" + char for word in words for char in word[1:]})


def train_tokenizer(texts, vocab_size=2000, lowercase=True):
    """A BERT-style WordPiece fast tokenizer trained on `texts` (an iterable of strings); deterministic."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)  # read twice: once for the continuation pieces, once to train
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The words exactly as the trainer sees them: normalised, then split by the same pre-tokenizer.
    words = (word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces = continuation_pieces(words)
    # Given as special tokens, the pieces get their ids in this sorted order before the trainer walks
    # its HashMap of words (which would otherwise number them in a random order, see the docstring).
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + pieces,
                                        show_progress=False)
    trained = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    trained.normalizer, trained.pre_tokenizer = normalizer, pre_tokenizer
    trained.train_from_iterator(texts, trainer)
    # A fresh tokenizer on the trained vocabulary: only the 5 real special tokens stay special (the pieces
    # must not be matched as whole tokens in text, nor dropped when decoding with skip_special_tokens).
    backend = Tokenizer(models.WordPiece(trained.get_vocab(with_added_tokens=False), unk_token="[UNK]",
                                         max_input_chars_per_word=100))
    backend.normalizer, backend.pre_tokenizer = normalizer, pre_tokenizer
    backend.add_special_tokens(SPECIAL_TOKENS)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        model_max_length=512,
    )


def make_tiny_albert(vocab_size, hidden_size=64, layers=2, heads=2, seed=0):
    """A randomly initialised AlbertForQuestionAnswering of a few hundred thousand parameters."""
    import torch
    from transformers import AlbertConfig, AlbertForQuestionAnswering

    torch.manual_seed(seed)
    config = AlbertConfig(
        vocab_size=vocab_size,
        embedding_size=32,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0,
    )
    return AlbertForQuestionAnswering(config)


def build(out_dir, texts, vocab_size=2000, hidden_size=64, layers=2, heads=2, seed=0):
    """Train the tokenizer, build the model, save both into `out_dir`; returns out_dir."""
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    model = make_tiny_albert(len(tokenizer), hidden_size=hidden_size, layers=layers, heads=heads, seed=seed)
    os.makedirs(out_dir, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-file", required=True, help="SQuAD-format JSON whose text trains the tokenizer")
    parser.add_argument("--out", required=True, help="folder to write the model and tokenizer to")
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.hidden_size % args.heads:
        parser.error(f"--hidden-size {args.hidden_size} must be a multiple of --heads {args.heads}")
    if not os.path.exists(args.train_file):
        parser.error(f"--train-file {args.train_file}: no such file (run `make data` or `make demo` first)")
    if os.path.exists(os.path.join(args.out, "model.safetensors")):
        print(f"{args.out}: tiny model already there, skipping (delete the folder to rebuild)")
        return 0
    build(args.out, squad_texts(args.train_file), args.vocab_size, args.hidden_size, args.layers, args.heads, args.seed)
    print(f"wrote tokenizer and tiny ALBERT to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
