"""The encoder-decoder Transformer of Vaswani et al. (2017), "Attention Is All You Need".

    memory = encode(src)                      # (B, S, d_model)
    hidden = decode(tgt_in, memory)           # (B, T, d_model)
    logits = hidden @ E^T                     # (B, T, vocab), E the (shared) embedding

``forward(src, tgt_in)`` returns the logits; ``forward(src, tgt_in, tgt_out)`` the summed
label-smoothed loss, NLL and token count of the targets (:class:`TargetLosses`), with the output
projection fused into the loss, so that whatever wraps the model (DDP, ``torch.compile``) wraps
the loss too. Incremental decoding calls ``encode`` once, then ``decode`` with a cache
(:class:`KeyValueCache`) and ``project`` per step.

Sinusoidal positions, embeddings scaled by sqrt(d_model), residual sublayers with layer norm
after (post-norm, the paper) or before (pre-norm) each sublayer, dropout on sublayer outputs,
attention weights and the feed-forward activation (:mod:`noamt.ops.dropout`), and attention through
``torch.nn.functional.scaled_dot_product_attention``. The code is device-agnostic: masks are
built on the input's device and nothing here chooses a device. :func:`build_model` makes one over
a tokenizer's vocabulary, for training and for the models read back from checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from noamt.bounds import at_least, between, fraction, require
from noamt.ops import Dropout, projected_token_losses

if TYPE_CHECKING:
    from noamt.data import Tokenizer


MAX_LAYERS = 1024
"""The most layers of the encoder or of the decoder: about twice the deepest trained for
translation (DeepNet, Wang et al. 2022: 500 + 500); a larger count only builds layers for minutes
before memory runs out."""
MAX_WIDTH = 65_536
"""The largest d_model and max_positions: a layer holds 4 * d_model^2 attention weights (17
billion at this bound) and the position table max_positions * d_model numbers, both made before
the first batch."""
MAX_FF = 4 * MAX_WIDTH
"""The largest d_ff: the usual d_ff = 4 * d_model at the largest d_model."""


@dataclass
class ModelConfig:
    """Size and regularisation of the Transformer (names as in the paper)."""

    name: str = "small"
    """A label for the size (tiny, small, base, big); it names runs, the model ignores it."""
    encoder_layers: int = 3
    """N of the encoder: its stacked self-attention + feed-forward layers (1 to 1024)."""
    decoder_layers: int = 3
    """N of the decoder: its stacked self-attention + cross-attention + feed-forward layers (1 to 1024)."""
    d_model: int = 256
    """Width of every embedding and sub-layer output (1 to 65536)."""
    n_heads: int = 4
    """h, the attention heads per layer; d_model must be a multiple of it (d_k = d_model / h)."""
    d_ff: int = 1024
    """Inner width of the position-wise feed-forward network (1 to 262144)."""
    dropout: float = 0.1
    """P_drop on the embeddings + positions and on each sub-layer's output before the residual sum."""
    attention_dropout: float = 0.0
    """Dropout on the attention weights (softmax output)."""
    activation_dropout: float = 0.0
    """Dropout after the feed-forward network's ReLU."""
    pre_norm: bool = False
    """LayerNorm before each sub-layer (x + F(LN(x)), with a final LayerNorm) instead of after (LN(x + F(x)))."""
    share_embeddings: bool = True
    """One embedding matrix for source, target and the output projection (joint vocabulary); false:
    the source has its own, and the target embedding is still the output projection (fairseq's
    --share-decoder-input-output-embed)."""
    max_positions: int = 1024
    """Rows of the sinusoidal position table: the longest sequence the model accepts (1 to 65536)."""

    def __post_init__(self) -> None:
        """Check every field that has bounds; one-line ValueErrors naming the key. The upper
        bounds (MAX_LAYERS, MAX_WIDTH, MAX_FF) refuse sizes whose weights no machine holds
        before a model is built."""
        limits = {"encoder_layers": MAX_LAYERS, "decoder_layers": MAX_LAYERS, "d_model": MAX_WIDTH,
                  "d_ff": MAX_FF, "max_positions": MAX_WIDTH}  # fmt: skip
        for key, most in limits.items():
            between(f"model.{key}", getattr(self, key), 1, most)
        at_least("model.n_heads", self.n_heads, 1)  # before the modulo below
        require("model.d_model", self.d_model, self.d_model % self.n_heads == 0,
                f"a multiple of model.n_heads={self.n_heads}")  # fmt: skip
        for key in ("dropout", "attention_dropout", "activation_dropout"):
            fraction(f"model.{key}", getattr(self, key))
        require("model.name", self.name, isinstance(self.name, str), "a string")
        for key in ("pre_norm", "share_embeddings"):
            require(f"model.{key}", getattr(self, key), isinstance(getattr(self, key), bool), "true or false")


def sinusoidal_positions(n_positions: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))."""
    position = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)  # (P, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(n_positions, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])
    return table  # (P, d)


class KeyValueCache(Protocol):
    """What incremental decoding keeps between steps (:class:`noamt.decoding.DecoderCache`).

    ``extend(layer, k, v)`` stores the keys and values (N, h, T, d/h) of ``layer``'s new target
    positions after the ``length`` cached ones and returns those of all positions; ``advance(T)``
    counts the positions once every layer has stored them; ``cross[layer]`` holds the keys and
    values of the encoder memory, computed once.
    """

    length: int
    cross: list[tuple[torch.Tensor, torch.Tensor] | None]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def advance(self, n_positions: int) -> None: ...


class TargetLosses(NamedTuple):
    """Sums over the non-padding target positions of a batch: what training averages and records."""

    loss: torch.Tensor  # sum of the label-smoothed cross-entropy (differentiable)
    nll: torch.Tensor  # sum of the negative log-likelihood, -log p(target) (no gradient)
    tokens: torch.Tensor  # number of target positions summed over (int64)


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)  # (B, h, T, d/h)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)  # (B, T, d)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KeyValueCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """x (N, T, d) -> (N, T, d). With a ``cache`` (decoder ``layer``), x holds the positions
        after the cached ones, which every new position may see."""
        q, k, v = (_split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        if cache is not None:
            if cache.length and q.size(2) != 1:
                raise ValueError("incremental decoding feeds one new target position per step")
            causal = causal and cache.length == 0
            k, v = cache.extend(layer, k, v)  # (N, h, t+1, d/h)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.out(_merge_heads(y))


class CrossAttention(nn.Module):
    """Multi-head attention from decoder positions to the encoder memory."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None,
        cache: KeyValueCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        """x (B*G, T, d), memory (B, S, d) -> (B*G, T, d).

        Each memory row serves G consecutive rows of x (G = 1 in training; the K beams of a
        sentence in beam search): their G*T queries attend to it in one product, so the memory
        is neither repeated nor reordered per beam.
        """
        q = _split_heads(self.q(x), self.n_heads)  # (B*G, h, T, d/h)
        kv = cache.cross[layer] if cache is not None else None
        if kv is None:
            keys, values = self.kv(memory).chunk(2, dim=-1)
            kv = _split_heads(keys, self.n_heads), _split_heads(values, self.n_heads)  # (B, h, S, d/h) each
            if cache is not None:
                cache.cross[layer] = kv
        k, v = kv
        n, h, t, dh = q.shape
        b = k.size(0)
        if n % b:
            raise ValueError(f"{n} decoder rows cannot share {b} memory rows equally")
        if n != b:
            q = q.view(b, n // b, h, t, dh).transpose(1, 2).reshape(b, h, n // b * t, dh)  # (B, h, G*T, d/h)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=memory_mask, dropout_p=self.dropout if self.training else 0.0
        )
        if n != b:
            y = y.view(b, h, n // b, t, dh).transpose(1, 2).reshape(n, h, t, dh)
        return self.out(_merge_heads(y))


class FeedForward(nn.Module):
    """FFN(x) = W2 dropout(relu(W1 x + b1)) + b2."""

    def __init__(self, d_model: int, d_ff: int, activation_dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.dropout = Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class Residual(nn.Module):
    """A sublayer with dropout, residual connection and layer norm.

    post-norm: LayerNorm(x + Dropout(f(x)));  pre-norm: x + Dropout(f(LayerNorm(x))).
    """

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = SelfAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.activation_dropout)
        self.attn_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.ffn_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        x = self.attn_block(x, lambda h: self.self_attn(h, mask=src_mask))
        return self.ffn_block(x, self.ffn)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int = 0):
        super().__init__()
        self.index = index  # position in the decoder stack, which names its part of a DecoderCache
        self.self_attn = SelfAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout)
        self.cross_attn = CrossAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.activation_dropout)
        self.self_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.cross_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)
        self.ffn_block = Residual(cfg.d_model, cfg.dropout, cfg.pre_norm)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: KeyValueCache | None = None,
    ) -> torch.Tensor:
        x = self.self_block(x, lambda h: self.self_attn(h, causal=True, cache=cache, layer=self.index))
        x = self.cross_block(x, lambda h: self.cross_attn(h, memory, memory_mask, cache=cache, layer=self.index))
        return self.ffn_block(x, self.ffn)


class Transformer(nn.Module):
    """Encoder-decoder Transformer; ``encode``, ``decode`` and ``forward`` as in the paper.

    ``cfg`` checked its own values; the one check across components, share_embeddings against
    the vocabularies' sizes, is made here, where both are known."""

    positions: torch.Tensor  # (max_positions, d_model), the sinusoids: a buffer

    def __init__(self, cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, pad_id: int):
        super().__init__()
        if cfg.share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError("model.share_embeddings=true needs one joint vocabulary for source and target")
        self.cfg, self.pad_id = cfg, pad_id
        self.embed_scale = math.sqrt(cfg.d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, cfg.d_model, padding_idx=pad_id)
        self.src_embed = (
            self.tgt_embed if cfg.share_embeddings else nn.Embedding(src_vocab_size, cfg.d_model, padding_idx=pad_id)
        )
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, cfg.d_model), persistent=False)
        self.embed_dropout = Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.decoder_layers))
        self.encoder_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_norm else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform linear layers, N(0, d_model^-0.5) embeddings, zero pad embedding."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for embed in {self.src_embed, self.tgt_embed}:
            nn.init.normal_(embed.weight, mean=0.0, std=self.cfg.d_model**-0.5)
            with torch.no_grad():
                embed.weight[self.pad_id].zero_()

    def _embed(self, embed: nn.Embedding, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        length = tokens.size(1)
        if offset + length > self.cfg.max_positions:
            raise ValueError(
                f"sequence of {offset + length} tokens exceeds model.max_positions={self.cfg.max_positions}"
            )
        x = embed(tokens) * self.embed_scale + self.positions[offset : offset + length]  # (B, T, d)
        return self.embed_dropout(x)

    def source_mask(self, src: torch.Tensor) -> torch.Tensor:
        """Boolean attention mask, True where a key is a real source token: (B, 1, 1, S)."""
        return (src != self.pad_id)[:, None, None, :]

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> memory (B, S, d) and its key mask (B, 1, 1, S)."""
        mask = self.source_mask(src)
        x = self._embed(self.src_embed, src)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x), mask

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: KeyValueCache | None = None,
    ) -> torch.Tensor:
        """tgt_in (B*G, T) -> hidden states (B*G, T, d). Position t sees target positions <= t only.

        memory (B, S, d) and memory_mask (B, 1, 1, S) hold one row per G consecutive rows of
        ``tgt_in`` (G = 1 but for beam search). With a ``cache``, ``tgt_in`` holds only the
        tokens after the cached ones (usually one).
        """
        offset = cache.length if cache is not None else 0
        x = self._embed(self.tgt_embed, tgt_in, offset)
        for layer in self.decoder:
            x = layer(x, memory, memory_mask, cache)
        if cache is not None:
            cache.advance(tgt_in.size(1))
        return self.decoder_norm(x)

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_embed.num_embeddings

    @property
    def max_positions(self) -> int:
        """The longest sequence the model accepts (``cfg.max_positions``)."""
        return self.cfg.max_positions

    def project(self, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (..., d) -> logits (..., V) through the shared embedding matrix E (V, d);
        for 2-D ``hidden`` (N, d), ``out`` may be an (N, V) tensor to write them into."""
        if out is not None:
            return torch.mm(hidden, self.tgt_embed.weight.t(), out=out)
        return F.linear(hidden, self.tgt_embed.weight)

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        tgt_out: torch.Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor | TargetLosses:
        """Teacher forcing: src (B, S), tgt_in (B, T) -> logits (B, T, V); with targets tgt_out
        (B, T), their :class:`TargetLosses` instead.

        The losses sum over the N positions where tgt_out is not padding, with label smoothing
        eps = ``label_smoothing``:  loss = sum_i [(1 - eps) (-log p_i(t_i)) + (eps / V) sum_v
        (-log p_i(v))].  Only those N hidden states are projected, and the projection is fused
        with the loss (:mod:`noamt.ops.cross_entropy`), so no (N, V) logits are kept.
        """
        memory, memory_mask = self.encode(src)
        hidden = self.decode(tgt_in, memory, memory_mask)  # (B, T, d)
        if tgt_out is None:
            return self.project(hidden)
        keep = tgt_out != self.pad_id  # (B, T)
        loss, nll = projected_token_losses(hidden[keep], self.tgt_embed.weight, tgt_out[keep], label_smoothing)
        return TargetLosses(loss, nll, keep.sum())


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (a shared embedding counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(cfg: ModelConfig, tokenizer: Tokenizer) -> Transformer:
    """A freshly initialised Transformer over the tokenizer's joint vocabulary: the one builder,
    for training and for the models read back from checkpoints and releases."""
    vocab = tokenizer.vocab_size
    return Transformer(cfg, vocab, vocab, pad_id=tokenizer.pad_id)
