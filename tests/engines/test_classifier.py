"""Native classifier engine: equal to Captum cell by cell, labels, padding, special tokens, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrib_mlops import attribute
from attrib_mlops.demo.tiny_classifier import build_tiny_classifier
from attrib_mlops.errors import AttribError, InputError, UnknownMethodError, UnsupportedModelError

VOCAB = ["the", "film", "plot", "was", "very", "good", "bad", "boring", "great", "and", "act", "##ing", "##s", "not"]
TEXTS = ["the film was good", "the acting was very boring and bad", "great plots", "not good"]
DECODER_TEXTS = ["the film was good", "the plot was very boring and bad", "great", "not good and not bad film"]


def _model(kind: str, **kw):
    model, tok = build_tiny_classifier(kind, VOCAB, hidden=32, layers=2, heads=4, seed=3, **kw)
    # larger weights than the 0.02 default so every token matters and differences would show
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model, tok


@pytest.fixture(scope="module")
def bert():
    return _model("bert")


@pytest.fixture(scope="module")
def gpt2():
    return _model("gpt2")


def _texts(kind):
    return DECODER_TEXTS if kind == "gpt2" else TEXTS


# ----------------------------------------------------------------- Captum reference
def _captum_reference(model, tok, text, method, cls, n_steps=20, ig_method="gausslegendre", baseline="unk"):
    """Captum on one unpadded sample, reduced as the engine documents (L2 over the embedding dim)."""
    from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency

    enc = tok(text, return_special_tokens_mask=True)
    ids = torch.tensor([enc["input_ids"]])
    special = torch.tensor([enc["special_tokens_mask"]], dtype=torch.bool)
    emb = model.get_input_embeddings()
    x = emb(ids).detach()
    if baseline == "unk":
        base = emb(torch.where(special, ids, torch.full_like(ids, tok.unk_token_id))).detach()
    else:
        base = torch.zeros_like(x)

    def fn(e):
        return model(inputs_embeds=e).logits.softmax(-1)

    if method == "saliency":
        a = Saliency(fn).attribute(x, target=cls, abs=True)
    elif method == "input_x_gradient":
        a = InputXGradient(fn).attribute(x, target=cls)
    elif method == "integrated_gradients":
        a = IntegratedGradients(fn).attribute(x, baselines=base, target=cls, n_steps=n_steps, method=ig_method)
    elif method == "occlusion":
        a = Occlusion(fn).attribute(x, sliding_window_shapes=(1, x.shape[-1]), baselines=base, target=cls)
        return a[0, :, 0].detach().numpy()
    else:
        raise AssertionError(method)
    return torch.linalg.vector_norm(a[0].detach(), dim=-1).numpy()


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients", "occlusion"])
def test_equal_to_captum_cell_by_cell(kind, method, bert, gpt2):
    model, tok = bert if kind == "bert" else gpt2
    texts = _texts(kind)
    # both classes for every text: two columns, batched with padding (texts differ in length)
    res = attribute(model, tok, texts, targets="*", methods=method, batch_size=4, n_steps=20)
    assert len(res) == len(texts)
    for text, r in zip(texts, res):
        assert r.target_tokens == ["negative", "positive"]
        for c in range(2):
            ref = _captum_reference(model, tok, text, method, c, n_steps=20)
            assert r.matrix.shape[0] == ref.shape[0]
            np.testing.assert_allclose(r.matrix[:, c], ref, rtol=2e-4, atol=1e-6 * (np.abs(ref).max() + 1e-3))
        assert np.abs(r.matrix).max() > 1e-4  # not a trivially zero attribution
        assert r.info["batched_forward"] is True  # padded batches, not the one-sample fallback
        # BERT: the last layer at [CLS] only (classifier_trim), GPT-2 pools the last token: full layer
        assert r.info["first_token_last_layer"] is (kind == "bert" and method != "attention")
        assert r.info["padding_side"] == ("left" if kind == "gpt2" else "right")


@pytest.mark.parametrize("rule", ["riemann_trapezoid", "riemann_left", "riemann_middle"])
def test_ig_rules_and_zero_baseline_equal_captum(rule, bert):
    model, tok = bert
    res = attribute(model, tok, TEXTS[:2], targets=1, methods="integrated_gradients", n_steps=8, ig_method=rule,
                    baseline="zeros")
    for text, r in zip(TEXTS[:2], res):
        ref = _captum_reference(model, tok, text, "integrated_gradients", 1, n_steps=8, ig_method=rule,
                                baseline="zeros")
        np.testing.assert_allclose(r.matrix[:, 0], ref, rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_attention_equals_models_own_attentions(kind, bert, gpt2):
    model, tok = bert if kind == "bert" else gpt2
    texts = _texts(kind)
    res = attribute(model, tok, texts, methods="attention", batch_size=4, layers=[0, -1], heads=[1, 2])
    for text, r in zip(texts, res):
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            atts = model(input_ids=ids, output_attentions=True).attentions
        mean = torch.stack([atts[0], atts[-1]])[:, 0][:, [1, 2]].mean(dim=(0, 1))  # [L, L]
        q = 0 if kind == "bert" else ids.shape[1] - 1  # [CLS] query / last token (the pooled one)
        np.testing.assert_allclose(r.matrix[:, 0], mean[q].numpy(), rtol=1e-5, atol=1e-7)
        assert r.info["pooling"] == ("first" if kind == "bert" else "last")


@pytest.mark.parametrize("kind", ["distilbert", "roberta"])
def test_other_encoders_equal_captum(kind):
    model, tok = _model(kind)
    res = attribute(model, tok, TEXTS, methods=["saliency", "integrated_gradients"], batch_size=4, n_steps=10)
    for r in res:
        cls = r.info["predicted_index"]
        ref = _captum_reference(model, tok, r.prompt, r.method, cls, n_steps=10)
        np.testing.assert_allclose(r.matrix[:, 0], ref, rtol=2e-4, atol=1e-7)


def test_predicted_class_layout_and_special_tokens(bert):
    model, tok = bert
    res = attribute(model, tok, TEXTS, methods="saliency", sample_ids=[f"s{i}" for i in range(4)])
    with torch.no_grad():
        for text, r in zip(TEXTS, res):
            p = model(**tok(text, return_tensors="pt")).logits.softmax(-1)[0]
            pred = int(p.argmax())
            assert r.target_tokens == [["negative", "positive"][pred]]
            assert r.info["predicted_index"] == pred and r.info["target_source"] == "predicted"
            np.testing.assert_allclose(r.step_scores["probability"], [float(p[pred])], rtol=1e-5)
            assert r.source_tokens[0] == "[CLS]" and r.source_tokens[-1] == "[SEP]"
            mask = r.info["special_tokens_mask"]
            assert mask[0] == 1 and mask[-1] == 1 and sum(mask) == 2
            assert r.n_prompt == len(r.source_tokens) and not r.is_decoder_only
            assert r.valid_mask().all()
    assert [r.sample_id for r in res] == ["s0", "s1", "s2", "s3"]
    assert res[1].source_tokens[2:4] == ["act", "##ing"] and res[1].info["word_ids"][2:4] == [1, 1]


def test_labels_by_name_index_list_and_all(bert):
    model, tok = bert
    by_name = attribute(model, tok, TEXTS[:2], targets=["positive", "negative"], methods="saliency")
    by_index = attribute(model, tok, TEXTS[:2], targets=[1, "0"], methods="saliency")
    both = attribute(model, tok, TEXTS[:2], targets=[["negative", "positive"], "*"], methods="saliency")
    assert [r.target_tokens for r in by_name] == [["positive"], ["negative"]]
    for a, b, c in zip(by_name, by_index, both):
        np.testing.assert_array_equal(a.matrix, b.matrix)
        col = c.target_tokens.index(a.target_tokens[0])
        np.testing.assert_allclose(c.matrix[:, col], a.matrix[:, 0], rtol=1e-6)
    assert by_name[0].info["target_source"] == "given"


def test_unknown_label_lists_the_labels(bert):
    model, tok = bert
    with pytest.raises(InputError, match=r"unknown label 'neutral'.*0='negative', 1='positive'"):
        attribute(model, tok, TEXTS[:1], targets="neutral", methods="saliency")
    with pytest.raises(InputError, match="out of range"):
        attribute(model, tok, TEXTS[:1], targets=5, methods="saliency")
    with pytest.raises(InputError, match="got 2 texts but 3 labels"):
        attribute(model, tok, TEXTS[:2], targets=["positive"] * 3, methods="saliency")


def test_no_id2label_falls_back_to_indices():
    model, tok = build_tiny_classifier("bert", VOCAB, labels=None, n_labels=3)
    r = attribute(model, tok, "good film", targets="LABEL_2", methods="saliency")[0]
    assert r.target_tokens == ["2"]
    assert r.info["labels"] == ["0", "1", "2"]
    assert "no id2label" in r.info["label_names"]
    assert attribute(model, tok, "good film", targets=2, methods="saliency")[0].target_tokens == ["2"]


def test_unsupported_head_and_method_errors(bert):
    from transformers import BertConfig, BertForTokenClassification, BertModel

    _, tok = bert
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16)
    for cls in (BertModel, BertForTokenClassification):
        with pytest.raises(UnsupportedModelError, match=r"ForSequenceClassification.*ForCausalLM|ForCausalLM.*Seq"):
            attribute(cls(cfg), tok, "good film", methods="saliency")
    model, tok = bert
    with pytest.raises(UnknownMethodError, match="valid methods: saliency"):
        attribute(model, tok, "good film", methods="gradient_shap")
    with pytest.raises(AttribError, match="engine 'inseq' does not attribute sequence classifiers"):
        attribute(model, tok, "good film", methods="saliency", engine="inseq")
    with pytest.raises(InputError, match="text 0 is empty"):
        attribute(model, tok, ["  "], methods="saliency")


def test_gpt2_without_pad_token_batches_and_restores_config():
    model, tok = _model("gpt2", pad_token=False)
    assert model.config.pad_token_id is None
    batched = attribute(model, tok, DECODER_TEXTS, methods="saliency", batch_size=4)
    single = attribute(model, tok, DECODER_TEXTS, methods="saliency", batch_size=1)
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.matrix, b.matrix, rtol=1e-5, atol=1e-8)
    assert model.config.pad_token_id is None


def test_model_state_restored_and_sdpa_switched_back():
    model, tok = _model("bert", attn_implementation="sdpa")
    model.train()
    model.classifier.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    attribute(model, tok, TEXTS, methods=["attention", "integrated_gradients", "occlusion"], n_steps=4)
    assert torch.equal(torch.rand(3), expected)  # caller's RNG stream untouched
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert model.config._attn_implementation == "sdpa"
    assert "forward" not in model.bert.encoder.layer[-1].__dict__  # the first-token last layer is undone
    assert all(p.grad is None for p in model.parameters())


def test_load_from_local_folder(bert, tmp_path):
    model, tok = bert
    model.save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    from_path = attribute(str(tmp_path), None, TEXTS[:2], methods="saliency")
    loaded = attribute(model, tok, TEXTS[:2], methods="saliency")
    assert type(model).__name__ == "BertForSequenceClassification"
    for a, b in zip(from_path, loaded):
        np.testing.assert_allclose(a.matrix, b.matrix, rtol=1e-5)
        assert a.info["model"] == str(tmp_path)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_half_precision_runs(dtype):
    model, tok = _model("bert")
    model = model.to(dtype)
    r = attribute(model, tok, TEXTS[:2], methods=["saliency", "integrated_gradients"], n_steps=4)
    assert all(x.matrix.dtype == np.float32 and np.isfinite(x.matrix).all() for x in r)
    assert next(model.parameters()).dtype == dtype


def test_context_limit_and_truncation():
    from attrib_mlops.errors import ContextLengthError

    model, tok = _model("bert")  # 64 positions; a fresh model, so the batching check sees the long text first
    long = " ".join(["good"] * 80)
    with pytest.raises(ContextLengthError, match="truncate=True"):
        attribute(model, tok, long, methods="saliency")
    r = attribute(model, tok, [long, "bad film"], methods="saliency", truncate=True)
    assert len(r[0].source_tokens) == 64 and r[0].source_tokens[-1] == "[SEP]"
    assert r[0].info["truncated_tokens"] == 18 and r[0].info["batched_forward"] is True
    assert "truncated_tokens" not in r[1].info
