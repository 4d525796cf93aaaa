"""noamt's post-norm Transformer as Hugging Face transformers' ``MarianMTModel``.

Marian is the same model: embeddings scaled by sqrt(d), sinusoidal positions from 0 in encoder
and decoder, post-norm layers LN(x + f(x)) with no embedding or final layer norm, ReLU (set by
``activation_function``), and logits h E^T + b with E the target embedding. The weights map so:

    Marian (state-dict name)                                 noamt
    model.shared (shared vocabulary) or
      model.{encoder,decoder}.embed_tokens                   src_embed, tgt_embed
    lm_head (tied to the decoder's embedding)                tgt_embed
    final_logits_bias                                        0 (noamt's projection has no bias)
    encoder.layers.i.self_attn.{q,k,v}_proj                  encoder.i.self_attn.qkv (rows q|k|v)
    encoder.layers.i.self_attn.out_proj                      encoder.i.self_attn.out
    encoder.layers.i.self_attn_layer_norm                    encoder.i.attn_block.norm
    {encoder,decoder}.layers.i.fc1, fc2, final_layer_norm    *.i.ffn.fc1, .fc2, *.i.ffn_block.norm
    decoder.layers.i.self_attn..., self_attn_layer_norm      decoder.i.self_attn, .self_block.norm
    decoder.layers.i.encoder_attn.q_proj, {k,v}_proj         decoder.i.cross_attn.q, .kv (rows k|v)
    decoder.layers.i.encoder_attn.out_proj, ..._layer_norm   decoder.i.cross_attn.out, .cross_block.norm

Positions. Marian never stores its position table: it computes it on loading, with the sines
of frequency w_i = 10000^(-2i/d) in columns i < d/2 and the cosines in columns d/2 + i, where
noamt's table PE interleaves them (sin in column 2i, cos in 2i + 1). The export therefore
permutes the d model coordinates by pi = (0, 2, 4, ..., 1, 3, 5, ...), Marian's coordinate k
being noamt's pi[k]: PE[:, pi] is Marian's table. Every weight that writes the d-wide residual
stream has its output rows permuted (W[pi], b[pi]: embeddings' columns, attention out_proj,
fc2, layer norm gain and bias), every weight that reads it its input columns (W[:, pi]:
q/k/v projections, fc1, the output projection E). Layer norm commutes with a permutation of
its coordinates and h E^T is unchanged, so the permuted model computes noamt's function with
Marian's own table: the export survives being saved again by transformers.

Decoding (the generation config): start from ``<s>`` (noamt's BOS), stop at ``</s>``,
force ``</s>`` at the last position allowed, never emit ``<pad>`` or ``<s>``
(``suppress_tokens``, applied to the log-probabilities as noamt's search does), and beam
search as noamt's default (``num_beams`` 5, ``length_penalty`` alpha over the length counting
``</s>``, stopping once ``num_beams`` hypotheses are finished: ``early_stopping=True``).
"""

from __future__ import annotations

import torch

from noamt.data import Tokenizer
from noamt.decoding import DecodingConfig
from noamt.export.check import ExportError
from noamt.export.release import tied_names
from noamt.model import ModelConfig, Transformer

PRE_NORM_REFUSAL = (
    "format=transformers: a pre-norm model (model.pre_norm=true) has no transformers architecture that matches "
    "it; export format=release or format=ctranslate2"
)


def transformers_module(what: str = "format=transformers"):
    """The ``transformers`` package; its absence is a one-line ExportError saying that ``what``
    (the option the user typed) needs it and naming the extra to install."""
    try:
        import transformers
    except ImportError as err:
        raise ExportError(f"{what} needs the transformers package: pip install 'noamt[transformers]'") from err
    return transformers


def marian_config(cfg: ModelConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int):
    """The ``MarianConfig`` of a post-norm noamt model of settings ``cfg`` over a joint
    vocabulary of ``vocab_size`` tokens with these special ids."""
    if cfg.pre_norm:
        raise ExportError(PRE_NORM_REFUSAL)
    return transformers_module().MarianConfig(
        vocab_size=vocab_size,
        decoder_vocab_size=vocab_size,
        d_model=cfg.d_model,
        encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers,
        encoder_attention_heads=cfg.n_heads,
        decoder_attention_heads=cfg.n_heads,
        encoder_ffn_dim=cfg.d_ff,
        decoder_ffn_dim=cfg.d_ff,
        activation_function="relu",
        dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout,
        max_position_embeddings=cfg.max_positions,
        scale_embedding=True,
        share_encoder_decoder_embeddings=cfg.share_embeddings,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        decoder_start_token_id=bos_id,
        forced_eos_token_id=eos_id,
    )


def generation_config(config):
    """``generate``'s defaults for the model of ``MarianConfig`` ``config``: its special ids, and
    noamt's search with its default beam size and length penalty.

    ``max_length`` counts the start token, so ``max_position_embeddings + 1`` lets the decoder
    read all its positions; noamt's per-sentence limit L = floor(a |x| + b) has no counterpart in
    ``generate``: pass ``max_length=L + 2`` for it.
    """
    decoding = DecodingConfig()
    return transformers_module().GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        forced_eos_token_id=config.forced_eos_token_id,
        suppress_tokens=[config.pad_token_id, config.bos_token_id],
        max_length=config.max_position_embeddings + 1,
        num_beams=decoding.beam_size,
        length_penalty=decoding.length_penalty,
        early_stopping=True,
    )


def marian_permutation(d_model: int) -> torch.Tensor:
    """pi: Marian's coordinate k is noamt's pi[k], the sine columns then the cosine columns."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


class _Mapping:
    """Marian's state dict, filled from noamt's with the coordinates permuted by pi."""

    def __init__(self, model: Transformer):
        self.noamt = {name: tensor.detach().cpu().float() for name, tensor in model.state_dict().items()}
        self.used: set[str] = set(tied_names(model.state_dict()))
        self.pi = marian_permutation(model.cfg.d_model)
        self.marian: dict[str, torch.Tensor] = {}

    def take(self, name: str) -> torch.Tensor:
        self.used.add(name)
        return self.noamt[name]

    def embedding(self, marian: str, noamt: str) -> None:
        self.marian[f"{marian}.weight"] = self.take(f"{noamt}.weight")[:, self.pi]

    def reading(self, marian: list[str], noamt: str) -> None:
        """Linear layers ``marian`` (one or a fused stack of several) reading the residual stream."""
        weights = self.take(f"{noamt}.weight")[:, self.pi].chunk(len(marian))
        biases = self.take(f"{noamt}.bias").chunk(len(marian))
        for name, weight, bias in zip(marian, weights, biases, strict=True):
            self.marian[f"{name}.weight"], self.marian[f"{name}.bias"] = weight, bias

    def writing(self, marian: str, noamt: str) -> None:
        """A linear layer or layer norm writing the residual stream."""
        self.marian[f"{marian}.weight"] = self.take(f"{noamt}.weight")[self.pi]
        self.marian[f"{marian}.bias"] = self.take(f"{noamt}.bias")[self.pi]

    def attention(self, marian: str, noamt: str, fused: dict[str, list[str]]) -> None:
        for projection, names in fused.items():
            self.reading([f"{marian}.{name}_proj" for name in names], f"{noamt}.{projection}")
        self.writing(f"{marian}.out_proj", f"{noamt}.out")

    def ffn(self, marian: str, noamt: str) -> None:
        self.reading([f"{marian}.fc1"], f"{noamt}.ffn.fc1")
        self.writing(f"{marian}.fc2", f"{noamt}.ffn.fc2")
        self.writing(f"{marian}.final_layer_norm", f"{noamt}.ffn_block.norm")

    def unused(self) -> list[str]:
        return sorted(set(self.noamt) - self.used)


def marian_state(model: Transformer) -> dict[str, torch.Tensor]:
    """``model``'s weights under ``MarianMTModel``'s names (one name per tensor: Marian ties the
    others to it), permuted as the module docstring says; a weight with no place in Marian is a
    one-line ExportError naming it."""
    if model.cfg.pre_norm:
        raise ExportError(PRE_NORM_REFUSAL)
    m = _Mapping(model)
    if model.cfg.share_embeddings:
        m.embedding("model.shared", "tgt_embed")
    else:
        m.embedding("model.encoder.embed_tokens", "src_embed")
        m.embedding("model.decoder.embed_tokens", "tgt_embed")
    self_attention = {"qkv": ["q", "k", "v"]}
    for i in range(model.cfg.encoder_layers):
        layer, noamt = f"model.encoder.layers.{i}", f"encoder.{i}"
        m.attention(f"{layer}.self_attn", f"{noamt}.self_attn", self_attention)
        m.writing(f"{layer}.self_attn_layer_norm", f"{noamt}.attn_block.norm")
        m.ffn(layer, noamt)
    for i in range(model.cfg.decoder_layers):
        layer, noamt = f"model.decoder.layers.{i}", f"decoder.{i}"
        m.attention(f"{layer}.self_attn", f"{noamt}.self_attn", self_attention)
        m.writing(f"{layer}.self_attn_layer_norm", f"{noamt}.self_block.norm")
        m.attention(f"{layer}.encoder_attn", f"{noamt}.cross_attn", {"q": ["q"], "kv": ["k", "v"]})
        m.writing(f"{layer}.encoder_attn_layer_norm", f"{noamt}.cross_block.norm")
        m.ffn(layer, noamt)
    m.marian["final_logits_bias"] = torch.zeros(1, model.tgt_vocab_size)
    unused = m.unused()
    if unused:
        raise ExportError(f"format=transformers: model weights {unused} have no place in a Marian model")
    return m.marian


def marian_model(model: Transformer, tokenizer: Tokenizer):
    """A ``MarianMTModel`` (eval mode) computing what ``model`` computes, with its generation
    config; a setting or weight Marian cannot hold is a one-line ExportError naming it."""
    config = marian_config(model.cfg, tokenizer.vocab_size, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)
    marian = transformers_module().MarianMTModel(config).eval()
    missing, unexpected = marian.load_state_dict(marian_state(model), strict=False)
    computed = {"model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"}
    unfilled = sorted(set(missing) - computed - set(tied_names(marian.state_dict())))
    if unfilled or unexpected:
        raise ExportError(f"format=transformers: Marian weights {unfilled or unexpected} do not match noamt's")
    marian.generation_config = generation_config(config)
    return marian
