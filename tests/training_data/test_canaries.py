"""Ground truth on trained tiny GPT-2s: injected canaries are found, flipped labels rank high.

Canaries: 10 rows answer the canary key ``kc`` (never in any context) with
``vc``; a held-out query asks ``? kc`` -> ``vc``, which only the canaries can
have taught. Recall@10 of the canaries must be >= 0.9 for tracin and datainf
(a random ranking gets about 10/N = 0.03). Flipped labels: 10% of the rows
have a wrong value; TracIn self-influence must rank them high (AUC >= 0.8).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

N_CANARIES = 10


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory):
    import datasets

    from attrib_mlops.demo.canaries import canary_query, canary_vocab, make_canary_dataset
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import keyvalue_predictions, train_keyvalue
    from attrib_mlops.training_data import build_training_index

    data, canaries = make_canary_dataset(300, n_canaries=N_CANARIES, seed=0)
    model, tok = build_tiny_model(canary_vocab(), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    out = tmp_path_factory.mktemp("canary")
    train_keyvalue(model, tok, data, max_steps=240, batch_size=16, lr=3e-3, lr_scheduler_type="constant",
                   warmup_steps=0, output_dir=str(out / "ckpts"), save_steps=80, logging_steps=20, num_threads=1)
    q = canary_query()
    assert keyvalue_predictions(model, tok, datasets.Dataset.from_list([q])) == ["vc"]  # the model learned it
    index = build_training_index(str(out / "ckpts"), None, data, out_dir=str(out / "index"), show_progress=False)
    return index, model, tok, q, canaries


@pytest.mark.parametrize("method", ["tracin", "datainf", "grad_cos"])
def test_canaries_are_recalled(canary_run, method):
    from attrib_mlops.training_data import attribute_training_data

    index, model, tok, q, canaries = canary_run
    assert len(index.checkpoints) == 3 and index.learning_rates == pytest.approx([3e-3] * 3)
    assert index.manifest["projection"]["kind"] == "sjlt" and index.has_layers
    res = attribute_training_data(index, model, tok, q["prompt"], q["target"], method=method, top_k=N_CANARIES)
    top = {it["index"] for it in res.top()["positive"]}
    recall = len(top & set(canaries)) / N_CANARIES
    random_recall = N_CANARIES / index.n_examples
    assert recall >= 0.9, (method, recall, random_recall)
    assert all(index.ids[i].startswith("canary-") for i in canaries)


def test_flipped_labels_have_high_self_influence(tmp_path):
    from scipy.stats import mannwhitneyu

    from attrib_mlops.demo.canaries import make_flipped_dataset
    from attrib_mlops.demo.tasks import keyvalue_vocab
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import train_keyvalue
    from attrib_mlops.training_data import build_training_index

    data = make_flipped_dataset(300, flip_rate=0.1, seed=0)
    flipped = np.array(data["flipped"])
    assert flipped.sum() == 30
    model, tok = build_tiny_model(keyvalue_vocab(), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    train_keyvalue(model, tok, data, max_steps=150, batch_size=16, lr=3e-3, lr_scheduler_type="constant",
                   warmup_steps=0, output_dir=str(tmp_path / "ckpts"), save_steps=50, logging_steps=10,
                   num_threads=1)
    index = build_training_index(str(tmp_path / "ckpts"), None, data, out_dir=str(tmp_path / "index"),
                                 show_progress=False)
    si = index.self_influence("tracin")
    u = mannwhitneyu(si[flipped], si[~flipped], alternative="greater").statistic
    auc = u / (flipped.sum() * (~flipped).sum())  # ROC AUC of self-influence as a flipped-label detector
    assert auc >= 0.8, auc
