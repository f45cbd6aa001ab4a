"""AT2's features: attention from the target to each source, per layer and head.

For one teacher-forced sample (prompt tokens ``0..P-1``, target tokens
``t = 0..T-1``) and one source ``s`` (the set of prompt tokens its character
span overlaps), the feature of layer ``l`` and head ``h`` for target token
``t`` is

    F[t, s, l * H + h] = sum_{k in s} A_l[h, P - 1 + t, k]

where ``A_l`` is the attention matrix the model returns with
``output_attentions=True`` (rows = queries, columns = keys). The query of
target token ``t`` is the position whose logits predict it (``P - 1 + t``: the
last prompt token for the first target token), as in AT2: the target token's
own position cannot influence its probability in a causal LM. A span of target
tokens ``[a, b)`` uses the mean over its tokens, ``mean_{t in [a, b)} F[t]``.

The weights come from the model itself (``output_attentions=True`` with the
``eager`` attention implementation), not from a re-implementation of
attention, so every Hugging Face causal LM that returns attention weights
works: GPT-2, Llama, Qwen2, Mistral, Gemma, Phi and others. A model loaded
with ``sdpa`` or ``flash_attention_*`` is switched to ``eager`` for the forward
and switched back afterwards (:func:`eager_attention`).

Samples of different lengths share one forward: rows are right-padded (a
causal query never sees the padding after it) with ``attention_mask`` 0 on the
padding and explicit positions ``0..n-1``.

Example:
    >>> from attrib_mlops.demo.tiny import build_tiny_model
    >>> from attrib_mlops.sources.forward import encode_prompt
    >>> import numpy as np
    >>> model, tok = build_tiny_model(["a", "b", "c"], n_layer=2, n_embd=16, n_head=2)
    >>> s = encode_prompt(tok, "a b c", " a", add_special_tokens=False, limit=None)
    >>> member = np.array([[1, 0], [1, 0], [0, 1]], bool)   # tokens -> 2 sources
    >>> [f] = source_features(model, [s], [member])
    >>> f.shape                                # [T, S, layers * heads]
    (1, 2, 4)
    >>> bool(np.allclose(f.sum(axis=1), 1.0))  # the prompt holds all the attention here
    True
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ...errors import InputError, UnsupportedMethodError
from ..forward import Prepared

__all__ = [
    "AttentionShape",
    "attention_shape",
    "architecture_of",
    "eager_attention",
    "source_features",
    "span_features",
]

#: Attention implementations that return weights with ``output_attentions=True``.
_RETURNS_WEIGHTS = (None, "eager")


class AttentionShape(tuple):
    """``(n_layers, n_heads)`` of a model's attention (a tuple with names)."""

    def __new__(cls, n_layers: int, n_heads: int):
        return super().__new__(cls, (int(n_layers), int(n_heads)))

    @property
    def n_layers(self) -> int:
        return self[0]

    @property
    def n_heads(self) -> int:
        return self[1]

    @property
    def n_features(self) -> int:
        return self[0] * self[1]


def _text_config(model: Any) -> Any:
    cfg = getattr(model, "config", None)
    get = getattr(cfg, "get_text_config", None)
    if callable(get):
        try:
            return get()
        except Exception:  # noqa: BLE001 - exotic configs
            return cfg
    return cfg


def attention_shape(model: Any) -> AttentionShape | None:
    """Layers and heads from the model's config (None when the config does not say)."""
    cfg = _text_config(model)
    layers = next((getattr(cfg, k) for k in ("num_hidden_layers", "n_layer", "num_layers")
                   if isinstance(getattr(cfg, k, None), int)), None)
    heads = next((getattr(cfg, k) for k in ("num_attention_heads", "n_head", "num_heads")
                  if isinstance(getattr(cfg, k, None), int)), None)
    if layers is None or heads is None:
        return None
    return AttentionShape(layers, heads)


def architecture_of(model: Any) -> dict[str, Any]:
    """What an estimator must match: ``model_type``, ``architectures``, ``n_layers``, ``n_heads``."""
    cfg = getattr(model, "config", None)
    shape = attention_shape(model)
    return {
        "model_type": getattr(cfg, "model_type", None) or type(model).__name__,
        "architectures": list(getattr(cfg, "architectures", None) or [type(model).__name__]),
        "n_layers": shape.n_layers if shape else None,
        "n_heads": shape.n_heads if shape else None,
    }


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[str | None]:
    """Run ``model`` with the ``eager`` attention implementation, then restore the previous one.

    Yields the implementation that was set before (None when the model has no
    config). Raises :class:`UnsupportedMethodError` when the model cannot be
    switched (then load it with ``attn_implementation="eager"``).
    """
    cfg = getattr(model, "config", None)
    impl = getattr(cfg, "_attn_implementation", None)
    if impl in _RETURNS_WEIGHTS:
        yield impl
        return
    setter = getattr(model, "set_attn_implementation", None)
    if not callable(setter):  # older transformers read the config attribute at every forward
        def setter(value: str | None) -> None:
            cfg._attn_implementation = value
    try:
        setter("eager")
    except Exception as e:  # noqa: BLE001 - transformers raises ValueError/ImportError/...
        raise UnsupportedMethodError(
            f"could not switch {type(model).__name__} from attn_implementation={impl!r} to 'eager' ({e}); "
            "load it with attn_implementation='eager'"
        ) from e
    try:
        yield impl
    finally:
        setter(impl)


def _accepts(model: Any, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
        return False


def _check_attentions(model: Any, atts: Any, batch_shape: tuple[int, int]) -> None:
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if not atts or any(a is None for a in atts):
        raise UnsupportedMethodError(
            f"{type(model).__name__} returned no attention weights with output_attentions=True "
            f"(attn_implementation={impl!r}); AT2 needs them: load the model with attn_implementation='eager'"
        )
    B, L = batch_shape
    heads = {tuple(a.shape[1:2]) for a in atts}
    bad = [tuple(a.shape) for a in atts if a.dim() != 4 or a.shape[0] != B or a.shape[-1] != L or a.shape[-2] != L]
    if bad or len(heads) != 1:
        raise UnsupportedMethodError(
            f"{type(model).__name__} returned attention weights of shape {bad[0] if bad else sorted(heads)}; AT2 "
            f"needs one [batch, heads, {L}, {L}] matrix per layer with the same number of heads in every layer"
        )


def _batches(lengths: Sequence[int], n_layers_heads: int, max_elements: int) -> Iterator[list[int]]:
    """Sample indices grouped so rows x heads x length^2 stays under ``max_elements`` (longest first)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    cur: list[int] = []
    for i in order:
        L = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) + 1) * n_layers_heads * L * L > max_elements:
            yield cur
            cur = []
        cur.append(i)
    if cur:
        yield cur


def source_features(
    model: Any,
    samples: Sequence[Prepared],
    memberships: Sequence[np.ndarray],
    *,
    pad_id: int | None = None,
    max_attention_elements: int = 2**27,
    counter: dict[str, int] | None = None,
) -> list[np.ndarray]:
    """Per sample, ``[T, S, n_layers * n_heads]`` float32 features (see the module docstring).

    Args:
        model: a causal LM (eval mode and no-grad are the caller's; switched to eager attention here).
        samples: teacher-forced samples from :func:`~attrib_mlops.sources.forward.encode_prompt`.
        memberships: per sample, ``[P, S]`` bool: prompt token ``i`` belongs to source ``j``
            (:func:`~attrib_mlops.sources.ablation.token_membership`).
        pad_id: id used for right padding (default: 0; padding is masked out anyway).
        max_attention_elements: memory bound per forward: rows x layers x heads x length^2
            attention weights (a single longer sample still runs alone).
        counter: if given, ``n_forwards`` (rows) and ``n_forward_calls`` are added to it, and
            ``n_layers``/``n_heads`` set to the attention shape the model returned.

    Raises:
        UnsupportedMethodError: the model returns no attention weights (name the fix).
        InputError: a membership matrix that does not fit its sample.
    """
    if len(samples) != len(memberships):
        raise InputError(f"got {len(samples)} samples but {len(memberships)} membership matrices")
    for k, (s, m) in enumerate(zip(samples, memberships)):
        if np.ndim(m) != 2 or np.shape(m)[0] != s.n_prompt:
            raise InputError(f"sample {k}: membership must be [{s.n_prompt}, n_sources], got {np.shape(m)}")
    out: list[np.ndarray | None] = [None] * len(samples)
    if not samples:
        return []
    shape = attention_shape(model)
    lh = shape.n_features if shape else 1
    lengths = [s.n_prompt + s.n_target - 1 for s in samples]
    device = _device(model)
    use_pos = _accepts(model, "position_ids")
    pad = 0 if pad_id is None else int(pad_id)
    with eager_attention(model), torch.no_grad():
        for idx in _batches(lengths, lh, max_attention_elements):
            L = max(lengths[i] for i in idx)
            ids = torch.full((len(idx), L), pad, dtype=torch.long)
            att = torch.zeros((len(idx), L), dtype=torch.long)
            for r, i in enumerate(idx):
                row = samples[i].prompt_ids + samples[i].target_ids[:-1]
                ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
                att[r, : len(row)] = 1
            kwargs: dict[str, Any] = {"attention_mask": att.to(device), "output_attentions": True, "use_cache": False}
            if use_pos:
                kwargs["position_ids"] = torch.arange(L, device=device).expand(len(idx), L)
            res = model(input_ids=ids.to(device), **kwargs)
            atts = getattr(res, "attentions", None)
            _check_attentions(model, atts, (len(idx), L))
            for r, i in enumerate(idx):
                s = samples[i]
                P, T = s.n_prompt, s.n_target
                member = torch.as_tensor(np.asarray(memberships[i], dtype=np.float32))
                per_layer = []
                for a in atts:
                    rows = a[r, :, P - 1 : P - 1 + T, :P].float()  # [H, T, P]
                    per_layer.append(rows @ member.to(rows.device))  # [H, T, S]
                f = torch.stack(per_layer)  # [layers, H, T, S]
                out[i] = f.permute(2, 3, 0, 1).reshape(T, member.shape[1], -1).cpu().numpy()
            if counter is not None:
                counter["n_layers"], counter["n_heads"] = len(atts), int(atts[0].shape[1])
                counter["n_forwards"] = counter.get("n_forwards", 0) + len(idx)
                counter["n_forward_calls"] = counter.get("n_forward_calls", 0) + 1
    return [o for o in out if o is not None]


def span_features(features: np.ndarray, span: tuple[int, int] | None = None) -> np.ndarray:
    """``[S, F]``: the mean of ``[T, S, F]`` features over target tokens ``[a, b)`` (default: all)."""
    T = features.shape[0]
    a, b = span if span is not None else (0, T)
    if not 0 <= a < b <= T:
        raise InputError(f"target token span ({a}, {b}) is outside the target's {T} tokens")
    return features[a:b].mean(axis=0)


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - parameterless model
        return torch.device("cpu")
