"""The DeSTA connector: a BERT-style Q-Former over tapped encoder layers, then LayerNorm + Linear.

Parameter names follow `transformers.BertEncoder` (add_cross_attention) and the official
`QformerConnector` (`layer_prompts`, `layer_weights`, `qformer.layer.N…`, `proj.0`/`proj.1`), so
official checkpoints map key for key. Self-attention over the queries is bidirectional (the official
code calls BertEncoder without a mask), cross-attention reads all encoder frames, or (with
`frames` given) only each clip's own: Whisper pads every clip to 30 s, so a 2 s clip is 93 %
padding, and a small connector that averages over it learns one constant (measured, issue #7).
With `normalize` the connector first standardises each tapped feature by statistics of training
clips (buffers `state_mean`/`state_std`, saved with the weights; identity until set).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-12  # BertConfig.layer_norm_eps


class _Attention(nn.Module):
    """`BertSelfAttention`: query/key/value projections, scaled dot-product attention."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"Q-Former width {width} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, w = x.shape
        split = lambda t: t.view(b, t.shape[1], self.heads, w // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(context)), split(self.value(context))
        attn_mask = None if mask is None else mask[:, None, None, :]  # (b, 1, 1, keys): True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, n, w)


class _AddNorm(nn.Module):
    """`BertSelfOutput` / `BertOutput`: dense, dropout, residual, post-LayerNorm."""

    def __init__(self, d_in: int, width: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class _Block(nn.Module):
    """`BertAttention`: attention + its output sub-layer."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self = _Attention(width, heads, dropout)
        self.output = _AddNorm(width, width, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.output(self.self(x, context, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, width: int, ffn: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # BERT's exact (erf) GELU


class QFormerLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attention = _Block(width, heads, dropout)
        self.crossattention = _Block(width, heads, dropout)
        self.intermediate = _Intermediate(width, ffn)
        self.output = _AddNorm(ffn, width, dropout)

    def forward(self, x: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attention(x, x)
        x = self.crossattention(x, frames, mask)
        return self.output(self.intermediate(x), x)


class QFormer(nn.Module):
    """Same keys as `BertEncoder(BertConfig(add_cross_attention=True, is_decoder=True))`."""

    def __init__(self, width: int, heads: int, layers: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(QFormerLayer(width, heads, ffn, dropout) for _ in range(layers))

    def forward(self, queries: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layer:
            queries = layer(queries, frames, mask)
        return queries


class Connector(nn.Module):
    """Tapped encoder states (N, L, frames, d) -> audio vectors (N, prompt_size, llm_width).

    One set of `prompt_size` learnable queries per tapped layer, one shared Q-Former, a softmax over
    layers per query position, then LayerNorm + Linear to the LLM width.
    """

    def __init__(self, n_layers: int, width: int, llm_width: int, prompt_size: int, heads: int,
                 qformer_layers: int, ffn: int, dropout: float, normalize: bool = False) -> None:
        super().__init__()
        self.prompt_size, self.normalize = prompt_size, normalize
        if normalize:
            self.register_buffer("state_mean", torch.zeros(n_layers, width))
            self.register_buffer("state_std", torch.ones(n_layers, width))
        self.layer_prompts = nn.ParameterList(
            nn.Parameter(torch.randn(1, prompt_size, width)) for _ in range(n_layers)
        )
        self.layer_weights = nn.Parameter(torch.zeros(prompt_size, n_layers))
        self.qformer = QFormer(width, heads, qformer_layers, ffn, dropout)
        self.proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, llm_width))
        self._init_bert()

    def _init_bert(self) -> None:
        """BERT's init (normal 0.02, zero bias, unit LayerNorm) for the Q-Former layers."""
        for m in self.qformer.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def scale_output_to(self, target_std: float) -> None:
        """Initialise the output projection so its outputs have the LLM token embeddings' scale.

        The LayerNorm output has unit variance per feature, so weights ~ N(0, target_std / sqrt(d_in))
        give outputs of std ~ target_std (measured on 2 CPU cores: this made the tiny model learn faster).
        """
        linear = self.proj[1]
        nn.init.normal_(linear.weight, std=target_std / math.sqrt(linear.in_features))
        nn.init.zeros_(linear.bias)

    @torch.no_grad()
    def set_state_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per tapped layer and feature (L, d): the standardisation applied to every input."""
        if not self.normalize:
            raise ValueError("this connector was built without normalize (model.normalize_states)")
        if mean.shape != self.state_mean.shape or std.shape != self.state_std.shape:
            raise ValueError(f"state stats of shape {tuple(mean.shape)}/{tuple(std.shape)}, want {tuple(self.state_mean.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("state stats must be finite with std > 0")
        self.state_mean.copy_(mean)
        self.state_std.copy_(std)

    def forward(self, states: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """`frames`: each clip's number of real (not padding) encoder positions; None = read all."""
        mask = None
        if frames is not None:
            # Cut the batch to its longest clip (less work) and mask the rest of each row's padding.
            states = states[:, :, : int(frames.max())]
            mask = torch.arange(states.shape[2], device=states.device)[None, :] < frames.to(states.device)[:, None]
        if self.normalize:
            mean, std = self.state_mean[None, :, None, :], self.state_std[None, :, None, :]
            states = ((states.float() - mean) / std).to(states.dtype)
        n, n_layers, length, width = states.shape
        # All tapped layers in one Q-Former call: (L*N, P, d) queries over (L*N, frames, d).
        queries = torch.cat([p.expand(n, -1, -1) for p in self.layer_prompts], dim=0)
        frames_ = states.transpose(0, 1).reshape(n_layers * n, length, width)
        out = self.qformer(queries, frames_, None if mask is None else mask.repeat(n_layers, 1))
        out = out.view(n_layers, n, self.prompt_size, -1).permute(1, 2, 0, 3)  # (N, P, L, d)
        weights = torch.softmax(self.layer_weights.float(), dim=-1).unsqueeze(-1)  # (P, L, 1)
        return self.proj((out * weights.to(out.dtype)).sum(dim=2))
