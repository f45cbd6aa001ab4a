"""Conversations: chat-template rendering, follow-up turns, rows labelled by turn, temporal aggregation.

A conversation is a list of ``{"role", "content"}`` messages. It is rendered
with the tokenizer's chat template (or one passed as ``chat_template``) and
tokenised *without* adding special tokens again (the template writes its own).

The seeds' eq. 8 builds turn ``k``'s input from the model's own earlier
answers, ``X_k = (X_1, Y_1, ..., X_{k-1}, Y_{k-1}, X_k)``:
:func:`follow_up_turns` does that greedily. :func:`turn_ids` labels each row of
a token matrix by the message it belongs to, :func:`turn_importance` sums a
matrix by turn, and :func:`temporal_turn_importance` is eq. 11
(``sum_t alpha_t A^t``) over a conversation's turns, through
:func:`attrib_mlops.analysis.aggregate.temporal_weighted_sum`.

Inseq and chat templates (Inseq issue 278): Inseq re-encodes the prompt text
with ``add_special_tokens=True``, so a template that writes the BOS token
itself (Llama, Mistral) gets a second BOS, and Inseq's free generation decodes
with ``skip_special_tokens`` so the generated text no longer starts with the
prompt (its assertion "Forced generations of decoder-only models must start
with the input texts"). :func:`inseq_chat_problem` says when a rendered prompt
is affected.

Example:
    >>> from attrib_mlops.demo.tiny import build_word_tokenizer
    >>> tok = build_word_tokenizer(["<user>", "<assistant>", "hi", "yo"])
    >>> r = render_conversation(tok, [{"role": "user", "content": "hi"}], chat_template=SIMPLE_CHAT_TEMPLATE)
    >>> r.text
    '<user> hi <assistant>'
    >>> [r.text[a:b] for a, b in r.content_spans]
    ['hi']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "SIMPLE_CHAT_TEMPLATE",
    "Rendered",
    "is_conversation",
    "check_messages",
    "render_conversation",
    "follow_up_turns",
    "turn_ids",
    "turn_importance",
    "temporal_turn_importance",
    "inseq_chat_problem",
    "chat_prompt_for_engines",
]

#: A minimal chat template for word-level tokenizers (roles as ``<role>`` words), used by tests and demos.
SIMPLE_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if not loop.first %} {% endif %}<{{ m['role'] }}> {{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %} <assistant>{% endif %}"
)

_HOW_TO_TEMPLATE = (
    "pass chat_template='...' (a Jinja template string, e.g. attrib_mlops.sources.conversation.SIMPLE_CHAT_TEMPLATE) "
    "or set tokenizer.chat_template before calling"
)


@dataclass
class Rendered:
    """A conversation rendered as text, with each message's content span and block span."""

    text: str
    messages: list[dict[str, str]]
    content_spans: list[tuple[int, int]]
    add_generation_prompt: bool


def is_conversation(x: Any) -> bool:
    """True for a non-empty list of mappings (a message list)."""
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(m, Mapping) for m in x)


def check_messages(messages: Any, index: int = 0) -> list[dict[str, str]]:
    """Validate a message list; returns plain ``{"role", "content"}`` dicts."""
    if not is_conversation(messages):
        raise InputError(f"prompt {index}: a conversation must be a non-empty list of {{'role', 'content'}} messages")
    out = []
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise InputError(
                f"prompt {index}, message {i}: needs string 'role' and 'content' keys, got {sorted(m.keys())}"
            )
        out.append({"role": role, "content": content})
    return out


def _template(tokenizer: Any, chat_template: str | None) -> str:
    tpl = chat_template or getattr(tokenizer, "chat_template", None)
    if not tpl:
        raise InputError(f"the tokenizer has no chat template, so a conversation cannot be rendered; {_HOW_TO_TEMPLATE}")
    return tpl


def _render(tokenizer: Any, messages: list[dict[str, str]], tpl: str, agp: bool) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp, chat_template=tpl)
    except Exception as e:  # noqa: BLE001 - jinja raises many types
        raise InputError(f"the chat template failed to render the conversation: {type(e).__name__}: {e}") from e


def render_conversation(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    *,
    chat_template: str | None = None,
    add_generation_prompt: bool | None = None,
    index: int = 0,
) -> Rendered:
    """Render ``messages`` with the chat template and find each message's content in the text.

    ``add_generation_prompt=None`` appends the assistant header unless the last
    message is the assistant's. Raises :class:`InputError` when the tokenizer
    has no template (and none is passed) or the template does not copy a
    message's content verbatim.
    """
    msgs = check_messages(messages, index)
    tpl = _template(tokenizer, chat_template)
    agp = msgs[-1]["role"] != "assistant" if add_generation_prompt is None else bool(add_generation_prompt)
    text = _render(tokenizer, msgs, tpl, agp)
    spans, cursor = [], 0
    for i, m in enumerate(msgs):
        content = m["content"]
        at = text.find(content, cursor)
        if at < 0 and content.strip():
            content = content.strip()
            at = text.find(content, cursor)
        if at < 0:
            raise InputError(
                f"prompt {index}: the chat template does not copy message {i}'s content verbatim, so its "
                "sources cannot be located; pass explicit source substrings taken from the rendered prompt"
            )
        spans.append((at, at + len(content)))
        cursor = at + len(content)
    return Rendered(text, msgs, spans, agp)


def follow_up_turns(
    model: Any,
    tokenizer: Any,
    user_messages: Sequence[str],
    *,
    system: str | None = None,
    max_new_tokens: int = 16,
    chat_template: str | None = None,
) -> list[tuple[list[dict[str, str]], str]]:
    """Eq. 8: turn ``k``'s conversation ``(X_1, Y_1, ..., X_k)`` with the model's own greedy answers.

    Returns ``[(messages_k, answer_k), ...]``: pass ``[m for m, _ in turns]`` as
    prompts and ``[a for _, a in turns]`` as targets to attribute every turn.
    """
    from .prepare import generate_continuations

    if not user_messages:
        raise InputError("follow_up_turns needs at least one user message")
    msgs: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    turns = []
    for text in user_messages:
        msgs = msgs + [{"role": "user", "content": str(text)}]
        rendered = render_conversation(tokenizer, msgs, chat_template=chat_template, add_generation_prompt=True)
        (answer,) = generate_continuations(model, tokenizer, [rendered.text], [False], max_new_tokens)
        turns.append((list(msgs), answer))
        msgs = msgs + [{"role": "assistant", "content": answer.strip()}]
    return turns


def _block_starts(tokenizer: Any, msgs: list[dict[str, str]], tpl: str, text: str) -> list[int] | None:
    """Start of each message's rendered block, when the template renders prefixes as prefixes."""
    starts = []
    for i in range(len(msgs)):
        if i == 0:
            starts.append(0)
            continue
        head = _render(tokenizer, msgs[:i], tpl, False)
        if not text.startswith(head):
            return None
        starts.append(len(head))
    return starts


def turn_ids(
    result: Any,
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    *,
    chat_template: str | None = None,
    add_generation_prompt: bool | None = None,
) -> np.ndarray:
    """Message index of every source row of a token :class:`~attrib_mlops.result.AttributionResult`.

    Prompt rows get the index of the message whose rendered block holds the
    token (markup included, when the template renders prefixes as prefixes;
    otherwise only content tokens are labelled and markup gets -1); target rows
    (and the generation prompt) get ``len(messages)``, the answer's turn.
    """
    r = render_conversation(tokenizer, messages, chat_template=chat_template,
                            add_generation_prompt=add_generation_prompt)
    if result.prompt == r.text:
        shift = 0
    elif result.prompt and r.text.endswith(result.prompt):  # chat_prompt_for_engines cut a written BOS
        shift = len(r.text) - len(result.prompt)
    else:
        raise InputError("the result's prompt is not this conversation's rendering; attribute the rendered text")
    n_prompt = int(result.n_prompt)
    enc = None
    for add in (False, True):
        e = tokenizer(result.prompt, add_special_tokens=add, return_offsets_mapping=True)
        if list(tokenizer.convert_ids_to_tokens(e["input_ids"])) == list(result.source_tokens[:n_prompt]):
            enc = e
            break
    if enc is None:
        raise InputError("the result's prompt tokens do not match the tokenizer's encoding of the rendered text")
    tpl = _template(tokenizer, chat_template)
    starts = _block_starts(tokenizer, r.messages, tpl, r.text)
    gen_start = None
    if r.add_generation_prompt:
        head = _render(tokenizer, r.messages, tpl, False)
        gen_start = len(head) if r.text.startswith(head) else r.content_spans[-1][1]
    n_msg = len(r.messages)
    ids = np.full(len(result.source_tokens), n_msg, dtype=np.int64)
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        a, b = a + shift, b + shift
        if b <= a:  # added by the tokenizer (no text): belongs to no message
            ids[i] = -1
        elif gen_start is not None and a >= gen_start:
            ids[i] = n_msg
        elif starts is not None:
            ids[i] = int(np.searchsorted(starts, a, side="right") - 1)
        else:
            hit = [k for k, (ca, cb) in enumerate(r.content_spans) if a < cb and b > ca]
            ids[i] = hit[0] if hit else -1
    return ids


def turn_importance(result: Any, ids: np.ndarray, n_turns: int | None = None) -> np.ndarray:
    """Total attribution of each turn: ``sum`` over its rows of the token importance ``sum_j A[i, j]``."""
    from ..analysis.aggregate import source_importance

    imp = np.asarray(source_importance(result), dtype=np.float64)
    ids = np.asarray(ids)
    if ids.shape != imp.shape:
        raise InputError(f"got {ids.size} turn ids for {imp.size} rows")
    n = int(n_turns if n_turns is not None else (ids.max() + 1 if ids.size else 0))
    out = np.zeros(n, dtype=np.float64)
    ok = (ids >= 0) & (ids < n) & np.isfinite(imp)
    np.add.at(out, ids[ok], imp[ok])
    return out


def temporal_turn_importance(
    per_turn: Sequence[Any], weights: Sequence[float] | None = None, decay: float | None = None
) -> np.ndarray:
    """Eq. 11 over a conversation: weighted sum of per-source scores across turns ``1..k``.

    ``per_turn[t]`` is turn ``t``'s score vector over the conversation's sources
    (e.g. :func:`turn_importance`, or a :class:`SourceAttribution` with
    ``sources="turn"``); later turns have more sources, so vectors are padded
    with NaN and a source absent at a turn does not count there.
    """
    from ..analysis.aggregate import temporal_weighted_sum

    vecs = [np.asarray(getattr(v, "scores", v), dtype=np.float64).reshape(-1) for v in per_turn]
    if not vecs:
        raise InputError("temporal_turn_importance needs at least one turn")
    n = max(v.size for v in vecs)
    mats = [np.pad(v, (0, n - v.size), constant_values=np.nan).reshape(n, 1) for v in vecs]
    return temporal_weighted_sum(mats, weights=weights, decay=decay)[:, 0]


def inseq_chat_problem(tokenizer: Any, rendered_prompt: str) -> str | None:
    """Why Inseq would attribute a chat-rendered prompt on other tokens than the template's, or None.

    Inseq encodes the prompt with the tokenizer's special tokens added; a
    template that already wrote them (e.g. its own BOS) gets them twice.
    """
    own = list(tokenizer(rendered_prompt, add_special_tokens=False)["input_ids"])
    inseq_ids = list(tokenizer(rendered_prompt, add_special_tokens=True)["input_ids"])
    if own == inseq_ids:
        return None
    extra = [t for t in tokenizer.convert_ids_to_tokens(inseq_ids) if t in (tokenizer.all_special_tokens or [])]
    return (
        "Inseq cannot attribute this chat-templated prompt faithfully (Inseq issue 278): it re-encodes the rendered "
        f"text adding the tokenizer's special tokens ({', '.join(extra[:3]) or 'extra tokens'}), which the chat "
        "template already wrote, so it would see different tokens than the model does in chat (the native "
        "engine drops the doubled BOS itself). Pass the text from "
        "attrib_mlops.sources.conversation.chat_prompt_for_engines(), or a template that leaves special tokens "
        "to the tokenizer; attribute_sources renders conversations itself and is not affected."
    )


def chat_prompt_for_engines(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    *,
    chat_template: str | None = None,
    add_generation_prompt: bool | None = None,
) -> str:
    """The prompt text to pass to :func:`attrib_mlops.attribute` for a conversation.

    The token engines encode prompts with the tokenizer's special tokens added
    (as Inseq does); a template that writes the BOS token itself would get it
    twice. This returns the rendered text, without the written BOS when the
    tokenizer adds it back, so that the engines see exactly the template's
    tokens. Raises :class:`InputError` (with the Inseq issue 278 explanation)
    when no text gives those tokens.
    """
    r = render_conversation(tokenizer, messages, chat_template=chat_template,
                            add_generation_prompt=add_generation_prompt)
    if inseq_chat_problem(tokenizer, r.text) is None:
        return r.text
    own = list(tokenizer(r.text, add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token", None)
    if bos and r.text.startswith(bos):
        cut = r.text[len(bos):]
        if list(tokenizer(cut, add_special_tokens=True)["input_ids"]) == own:
            return cut
    raise InputError(inseq_chat_problem(tokenizer, r.text) or "chat prompt cannot be encoded")
