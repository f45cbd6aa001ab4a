"""The explorer's subword-to-word toggle: the widget and what it does to the shown results.

Tokens (the stored rows) or words: a word's row is the ``sum``, ``mean`` or ``max`` of its
pieces' rows (:func:`attrib_mlops.analysis.words.aggregate_words`, which finds the words
from the stored ``word_ids``/``offsets`` of a classifier result, else from the tokens'
subword markers). Special tokens stay rows of their own. Presentation only: the stored
results are unchanged.

Example:
    >>> import numpy as np
    >>> from attrib_mlops.result import AttributionResult
    >>> r = AttributionResult(np.array([[1.0], [2.0]]), ["lack", "##luster"], ["neg"], "saliency", "native",
    ...                       n_prompt=2)
    >>> to_words({"saliency": r}, "sum")["saliency"].source_tokens
    ['lackluster']
    >>> word_key("tokens"), word_key("max")
    ((), ('words:max',))
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from attrib_mlops.analysis.words import AGGREGATIONS, aggregate_words
from attrib_mlops.result import AttributionResult

__all__ = ["TOKENS", "WORD_OPTIONS", "word_toggle", "to_words", "word_key"]

TOKENS = "tokens"
#: Button label -> value: the stored tokens, or words by one of the aggregations.
WORD_OPTIONS: Mapping[str, str] = MappingProxyType({"tokens": TOKENS,
                                                   **{f"words: {how}": how for how in AGGREGATIONS}})


def word_toggle(**params: Any) -> Any:
    """The toggle (a Panel ``RadioButtonGroup``, CSS class ``explorer-words``), showing tokens by default."""
    import panel as pn

    return pn.widgets.RadioButtonGroup(options=dict(WORD_OPTIONS), value=TOKENS, css_classes=["explorer-words"],
                                       align="end", **params)


def to_words(results: Mapping[str, AttributionResult], how: str) -> dict[str, AttributionResult]:
    """The results as shown: unchanged for ``tokens``, else each aggregated to words by ``how``."""
    if how == TOKENS:
        return dict(results)
    return {m: aggregate_words(r, how) for m, r in results.items()}


def word_key(how: str) -> tuple[str, ...]:
    """What the toggle adds to the explorer's drawing key (nothing when it shows tokens)."""
    return () if how == TOKENS else (f"words:{how}",)
