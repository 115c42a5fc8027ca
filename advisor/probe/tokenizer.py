"""The probe's tokenizer: the model's own, or an honest stand-in when there is none.

A model built with --random-init from a registry entry or a bare config.json has no tokenizer
on disk, and none can be fetched offline. The stand-in is a byte-level BPE trained on the
built-in corpus with the `tokenizers` library (a transformers dependency), its vocabulary kept
below the model's: every id the probe feeds is one the embedding has. The report says which
tokenizer ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from advisor.probe.result import CouldNotRun

STANDIN_VOCAB = 8192  # not-knowledge: stand-in BPE size (a few seconds to train on the corpus)
BYTE_ALPHABET = 256  # not-knowledge: byte-level BPE's base symbols
EOS = "<|endoftext|>"


@dataclass
class Codec:
    """What the data pipeline needs from a tokenizer."""

    encode_fn: Any
    eos_id: int
    pad_id: int
    bos_id: int | None
    chat: Any  # a transformers tokenizer with a chat template, or None
    name: str
    hf: Any = None  # the transformers tokenizer itself, or the stand-in's `tokenizers` object (TRL's trainers need one)

    def hf_tokenizer(self) -> Any:
        """A transformers tokenizer (TRL's trainers take nothing else): the model's own, or the stand-in wrapped."""
        from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

        if isinstance(self.hf, PreTrainedTokenizerBase):
            if self.hf.pad_token is None:
                self.hf.pad_token = self.hf.eos_token
            return self.hf
        return PreTrainedTokenizerFast(tokenizer_object=self.hf, eos_token=EOS, pad_token=EOS)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = list(self.encode_fn(text))
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids.insert(0, self.bos_id)
        return ids

    def render_chat(self, messages: list[dict[str, Any]]) -> tuple[str, str]:
        """The conversation as text, and how it was rendered."""
        if self.chat is not None:
            text = self.chat.apply_chat_template(messages, tokenize=False)
            return str(text), "the tokenizer's chat template"
        rendered = "\n\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages)
        return rendered, "'role: content' lines (the tokenizer has no chat template)"


@lru_cache(maxsize=4)
def _standin(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from advisor.probe.corpus import corpus_texts

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    train, held_out = corpus_texts()
    tok.train_from_iterator([*train, *held_out], trainer=trainer)
    return tok


def standin_codec(model_vocab: int) -> Codec:
    size = min(STANDIN_VOCAB, model_vocab)
    if size <= BYTE_ALPHABET:
        raise CouldNotRun(f"the model's vocabulary ({model_vocab}) is too small for the byte-level stand-in tokenizer",
                          hint=f"give the model a vocab_size above {BYTE_ALPHABET}")
    tok = _standin(size)
    eos = tok.token_to_id(EOS)
    return Codec(encode_fn=lambda text: tok.encode(text).ids, eos_id=eos, pad_id=eos, bos_id=None, chat=None,
                 name=f"stand-in byte-level BPE, {tok.get_vocab_size()} tokens, trained on the built-in corpus "
                      f"(the model has no tokenizer here)", hf=tok)


def hf_codec(tok: Any, where: str) -> Codec:
    eos = tok.eos_token_id
    if eos is None:
        eos = tok.pad_token_id if tok.pad_token_id is not None else 0
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    return Codec(encode_fn=lambda text: tok(text, add_special_tokens=False)["input_ids"], eos_id=int(eos),
                 pad_id=int(pad), bos_id=tok.bos_token_id, chat=tok if getattr(tok, "chat_template", None) else None,
                 name=f"{type(tok).__name__} from {where}", hf=tok)


def cache_only(where: Any) -> str | None:
    """Why ``where``, a hub id rather than a directory, can be loaded from the local cache only (the hub
    cannot be asked); None when it is a path or the hub may be asked. Told so, from_pretrained fails at
    once instead of waiting about 50 s on huggingface_hub's retries."""
    from advisor.facts.hub import hub_unreachable

    return None if Path(str(where)).exists() else hub_unreachable()


def load_codec(load_from: str, kind: str, model_vocab: int, *, allow_hub: bool) -> Codec:
    """The model's tokenizer (local directory, or the hub when allowed), else the stand-in."""
    from transformers import AutoTokenizer

    candidates: list[str] = []
    if kind == "local" or (kind == "config" and Path(load_from).parent.is_dir()):
        directory = load_from if kind == "local" else str(Path(load_from).parent)
        if any((Path(directory) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            candidates.append(directory)
    elif allow_hub:
        candidates.append(load_from)
    for where in candidates:
        try:
            tok = AutoTokenizer.from_pretrained(where, local_files_only=cache_only(where) is not None)
        except Exception:  # no usable tokenizer there: the stand-in is the honest fallback
            continue
        if len(tok) <= model_vocab:
            return hf_codec(tok, where)
    return standin_codec(model_vocab)
