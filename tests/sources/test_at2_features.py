"""AT2 features equal the model's own attention weights, aggregated as documented, for three families."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrib_mlops.demo.tiny_families import build_tiny_causal_lm
from attrib_mlops.errors import UnsupportedMethodError
from attrib_mlops.sources.ablation import token_membership
from attrib_mlops.sources.at2.features import (
    architecture_of,
    attention_shape,
    eager_attention,
    source_features,
    span_features,
)
from attrib_mlops.sources.forward import encode_prompt
from attrib_mlops.sources.splitting import find_substrings

VOCAB = [f"w{i}" for i in range(30)] + [".", ";"]
PROMPTS = [
    ("w1 w2 . w3 w4 w5 . w6 ;", " w7 w8 w9", ["w1 w2 .", "w3 w4 w5 .", "w6 ;"]),
    ("w10 . w11 ;", " w12", ["w10 .", "w11 ;"]),
    ("w13 w14 w15 w16 . w17 . w18 w19 . w20 ;", " w21 w22", ["w13 w14 w15 w16 .", "w17 .", "w18 w19 .", "w20 ;"]),
]


def _prepared(tok, add_special):
    out = []
    for prompt, target, srcs in PROMPTS:
        s = encode_prompt(tok, prompt, target, add_special_tokens=add_special, limit=None)
        out.append((s, token_membership(s.offsets, find_substrings(prompt, srcs), s.n_prompt)))
    return out


def _reference(model, s, member) -> np.ndarray:
    """Unbatched, unpadded forward; the documented sum/indexing written out with loops."""
    ids = torch.tensor([s.prompt_ids + s.target_ids[:-1]])
    with eager_attention(model), torch.no_grad():
        atts = model(input_ids=ids, output_attentions=True, use_cache=False).attentions
    P, T, S = s.n_prompt, s.n_target, member.shape[1]
    L, H = len(atts), atts[0].shape[1]
    ref = np.zeros((T, S, L * H))
    for t in range(T):
        for j in range(S):
            for layer in range(L):
                for h in range(H):
                    q = P - 1 + t  # the position whose logits predict target token t
                    ref[t, j, layer * H + h] = sum(
                        float(atts[layer][0, h, q, k]) for k in range(P) if member[k, j]
                    )
    return ref


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_features_equal_returned_attention_aggregated(family):
    model, tok = build_tiny_causal_lm(family, VOCAB, n_layer=2, n_embd=32, n_head=4, seed=1)
    impl = model.config._attn_implementation
    assert impl == "sdpa"  # returns no weights: the extractor must switch and restore
    prepared = _prepared(tok, add_special=family != "gpt2")
    counter: dict[str, int] = {}
    feats = source_features(model, [p[0] for p in prepared], [p[1] for p in prepared], pad_id=tok.pad_token_id,
                            counter=counter)
    assert model.config._attn_implementation == impl
    # three samples of different lengths, right-padded into one forward
    assert counter["n_forward_calls"] == 1 and counter["n_forwards"] == 3
    assert (counter["n_layers"], counter["n_heads"]) == (2, 4) == tuple(attention_shape(model))
    for (s, member), f in zip(prepared, feats):
        ref = _reference(model, s, member)
        assert f.shape == (s.n_target, member.shape[1], 8)
        np.testing.assert_allclose(f, ref, rtol=1e-4, atol=1e-6)
        # the features are not trivial: sources and heads differ
        assert np.ptp(f) > 1e-3
    # span mean = mean over target tokens
    s, _ = prepared[0]
    np.testing.assert_allclose(span_features(feats[0], (1, 3)), feats[0][1:3].mean(axis=0))
    with pytest.raises(Exception, match="outside the target"):
        span_features(feats[0], (0, 9))


def test_memory_bound_splits_batches_without_changing_features():
    model, tok = build_tiny_causal_lm("llama", VOCAB, n_layer=2, n_embd=32, n_head=4)
    prepared = _prepared(tok, add_special=True)
    args = ([p[0] for p in prepared], [p[1] for p in prepared])
    one = source_features(model, *args, pad_id=tok.pad_token_id)
    counter: dict[str, int] = {}
    split = source_features(model, *args, pad_id=tok.pad_token_id, max_attention_elements=1, counter=counter)
    assert counter["n_forward_calls"] == 3
    for a, b in zip(one, split):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_eager_model_is_left_alone_and_architecture_read():
    model, tok = build_tiny_causal_lm("qwen2", VOCAB, n_layer=3, n_head=4, attn_implementation="eager")
    with eager_attention(model) as before:
        assert before == "eager"
    arch = architecture_of(model)
    assert arch["model_type"] == "qwen2" and arch["n_layers"] == 3 and arch["n_heads"] == 4


class _NoAttentionLM(torch.nn.Module):
    """A real (tiny) causal LM that has no attention weights to return."""

    def __init__(self, vocab: int):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 8)
        self.out = torch.nn.Linear(8, vocab)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        from transformers.modeling_outputs import CausalLMOutput

        return CausalLMOutput(logits=self.out(self.emb(input_ids)))


def test_model_without_attention_weights_names_eager():
    _, tok = build_tiny_causal_lm("gpt2", VOCAB)
    prepared = _prepared(tok, add_special=False)
    with pytest.raises(UnsupportedMethodError, match="attn_implementation='eager'"):
        source_features(_NoAttentionLM(len(tok)), [prepared[0][0]], [prepared[0][1]])


def test_sdpa_model_that_cannot_switch_names_eager():
    """A model stuck on sdpa (the switch is refused) gets an error naming the implementation to load."""
    model, tok = build_tiny_causal_lm("llama", VOCAB)

    def refuse(value):
        raise ValueError("this model does not support eager attention")

    model.set_attn_implementation = refuse  # as a model class that only ships an sdpa kernel would
    prepared = _prepared(tok, add_special=True)
    with pytest.raises(UnsupportedMethodError, match="load it with attn_implementation='eager'"):
        source_features(model, [prepared[0][0]], [prepared[0][1]])
    assert model.config._attn_implementation == "sdpa"
