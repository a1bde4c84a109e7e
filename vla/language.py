"""Instruction encoders behind one interface: ``encoder(texts) -> (tokens [B, L, D], mask [B, L])``.

- :class:`ScratchTextEncoder` (default): a word-level tokenizer whose vocabulary is built from the
  training instructions (stored with the model), a trainable embedding and learned positions.
  Nothing is downloaded.
- :class:`PretrainedTextEncoder`: a transformers (or sentence-transformers) model loaded from a
  local directory with ``local_files_only=True``, frozen, followed by a trainable projection. Its
  outputs are cached per instruction (instructions repeat across a dataset).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

PAD, UNK = "<pad>", "<unk>"


class InstructionTokenizer:
    """Lower-cased words and digits; unknown words map to ``<unk>``."""

    def __init__(self, vocab: list[str]):
        if vocab[:2] != [PAD, UNK]:
            raise ValueError(f"vocab: must start with {[PAD, UNK]}, got {vocab[:2]}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab: duplicate entries")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(vocab)}

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    @classmethod
    def build(cls, texts: list[str]) -> InstructionTokenizer:
        words = sorted({w for t in texts for w in cls.words(t)})
        return cls([PAD, UNK] + words)

    def encode(self, texts: list[str], max_len: int) -> tuple[Tensor, Tensor]:
        """ids ``[B, max_len]`` (long) and mask ``[B, max_len]`` (True = a real token)."""
        ids = torch.zeros(len(texts), max_len, dtype=torch.long)
        for b, t in enumerate(texts):
            w = [self.index.get(x, 1) for x in self.words(t)][:max_len]
            ids[b, : len(w)] = torch.tensor(w, dtype=torch.long)
        mask = ids != 0
        mask[:, 0] = True  # an empty instruction still has one (padding) token to attend to
        return ids, mask


class ScratchTextEncoder(nn.Module):
    def __init__(self, vocab: list[str], dim: int, max_len: int = 16):
        super().__init__()
        self.tokenizer = InstructionTokenizer(vocab)
        self.max_len = max_len
        self.embed = nn.Embedding(len(vocab), dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)

    def forward(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        ids, mask = self.tokenizer.encode(texts, self.max_len)
        ids, mask = ids.to(self.pos.device), mask.to(self.pos.device)
        return self.embed(ids) + self.pos, mask


class PretrainedTextEncoder(nn.Module):
    """A frozen local transformers model + a trainable projection to ``dim``."""

    def __init__(self, path: str | Path, dim: int, max_len: int = 16):
        super().__init__()
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"text_path: {path} is not a transformers model directory (no config.json)")
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise ImportError("text='pretrained' needs transformers: pip install 'worldline[diffusion]'") from None
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        model.eval().requires_grad_(False)
        self._model = [model]  # a list: kept out of state_dict (the weights stay in their directory)
        self.max_len = max_len
        self.proj = nn.Linear(model.config.hidden_size, dim)
        self._cache: dict[str, tuple[Tensor, Tensor]] = {}

    def _encode_one(self, text: str) -> tuple[Tensor, Tensor]:
        if text not in self._cache:
            tok = self.tokenizer(
                [text], padding="max_length", truncation=True, max_length=self.max_len, return_tensors="pt"
            )
            with torch.no_grad():
                hidden = self._model[0](**tok).last_hidden_state[0]
            self._cache[text] = (hidden, tok["attention_mask"][0].bool())
        return self._cache[text]

    def forward(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        hs, ms = zip(*(self._encode_one(t) for t in texts))
        device = self.proj.weight.device
        return self.proj(torch.stack(hs).to(device)), torch.stack(ms).to(device)
