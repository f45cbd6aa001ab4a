"""jobs.kinds: task kinds (what a job does per attribution kind) and their cache codecs."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops.errors import InputError
from attrib_mlops.jobs import ResultCache, TaskKind, task_kind
from attrib_mlops.jobs.cache import cache_key
from attrib_mlops.jobs.kinds import method_kind, task_kind_names
from attrib_mlops.result import AttributionResult


class Scores:
    """A result of another kind: one score per context source."""

    def __init__(self, scores):
        self.scores = list(scores)

    def to_dict(self):
        return {"scores": self.scores}


class SourceScores(TaskKind):
    name = "test_sources_kind"

    def decode(self, data):
        return Scores(data["scores"])

    def key_extra(self, sample):
        return {"sources": ["s1", "s2"]}


def test_token_matrix_is_the_default_kind_of_every_method():
    assert "token_matrix" in task_kind_names()
    assert method_kind("saliency", "native") == "token_matrix" and method_kind("lime", "inseq") == "token_matrix"
    with pytest.raises(InputError, match="kind 'no_such_kind' yet; kinds: .*token_matrix"):
        task_kind("no_such_kind")


def test_a_new_kind_has_its_own_codec_and_cache_keys(tmp_path):
    cache = ResultCache(tmp_path)
    common = {"model_fingerprint": "m", "method": "ctx", "engine": "e", "options": {}, "prompt": "p", "target": "t",
              "versions": {}}
    k_tokens = cache_key(**common)
    k_sources = cache_key(**common, kind="test_sources_kind", extra=SourceScores().key_extra(None))
    assert k_tokens != k_sources
    cache.put(k_sources, Scores([0.5, 0.25]), kind="test_sources_kind")
    got = cache.get(k_sources, kind="test_sources_kind")
    assert isinstance(got, Scores) and got.scores == [0.5, 0.25]
    r = AttributionResult(np.ones((2, 1)), ["a", "b"], ["b"], "saliency", "native", n_prompt=1, sample_id="x")
    cache.put(k_tokens, r)
    assert task_kind("token_matrix").decode(task_kind("token_matrix").encode(r)).sample_id == "x"
    assert cache.get(k_tokens).source_tokens == ["a", "b"]
