"""Prompt templates and the label verbaliser: the one place that decides what the model reads.

Training and serving both render papers through `PromptRenderer`, so the text the model sees
at serving time is byte-for-byte the text it was trained on. A template is named and versioned;
its token caps are part of the version, because they change what the model sees.

The chat frame (the model's chat template with placeholders) comes from the model's tokenizer
once, when a model directory is written, and is stored beside it in `prompt_frame.json`; the
gateway then needs only `tokenizers` (no transformers, no torch) to render and truncate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

FRAME_FILE = "prompt_frame.json"
_SYS, _USER = "\x00SYSTEM\x00", "\x00USER\x00"
# Used for models without a chat template.
PLAIN_FRAME = f"{_SYS}\n\n{_USER}\nAnswer:"


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    revision: int
    system: str
    instruction: str
    title_token_cap: int
    abstract_token_cap: int | None
    # Of a capped abstract, how many tokens come from its end (the conclusion, which often
    # names the disease) instead of its start; 0 keeps the start only.
    abstract_tail_tokens: int = 0
    # When the capped read is unsure (see model_contract.reading.needs_reread), serving reads
    # the paper again with this many abstract tokens (the whole abstract, in practice); None:
    # never. Part of the version, since it changes what the model sees.
    reread_abstract_cap: int | None = None
    # label -> the single answer token the model emits for it.
    label_words: Mapping[str, str] = field(
        default_factory=lambda: {"cancer": "yes", "non_cancer": "no"}
    )

    def __post_init__(self) -> None:
        if self.abstract_tail_tokens and not (
            self.abstract_token_cap and 0 < self.abstract_tail_tokens < self.abstract_token_cap
        ):
            raise ValueError("abstract_tail_tokens needs a larger abstract_token_cap")

    @property
    def version(self) -> str:
        """e.g. cancer-yn-short.r1.t64.a96, or ...a48+48 for 48 tokens from the start and 48
        from the end."""
        cap = self.abstract_token_cap
        if cap is None:
            abstract = "none"
        elif self.abstract_tail_tokens:
            abstract = f"{cap - self.abstract_tail_tokens}+{self.abstract_tail_tokens}"
        else:
            abstract = str(cap)
        reread = f".re{self.reread_abstract_cap}" if self.reread_abstract_cap else ""
        return f"{self.name}.r{self.revision}.t{self.title_token_cap}.a{abstract}{reread}"

    def reread(self) -> PromptTemplate | None:
        """The template of the second, longer read; None when this template has none."""
        if not self.reread_abstract_cap:
            return None
        return replace(self, abstract_token_cap=self.reread_abstract_cap, abstract_tail_tokens=0,
                       reread_abstract_cap=None)

    def user_message(self, title: str, abstract: str) -> str:
        # The instruction comes first so every prompt shares one prefix (prefix caching).
        return f"{self.instruction}\nTitle: {title}\nAbstract: {abstract}"


# Shared by every template below; changing either is a new revision of each.
_SYSTEM = "You classify biomedical papers."
_INSTRUCTION = "Is this paper about cancer? Answer yes or no."
# vLLM's CPU backend keeps KV in blocks of a multiple of 32 tokens, and its prefix cache serves
# whole blocks: the served engine and the evaluation engine both use this size on CPU.
CPU_KV_BLOCK_TOKENS = 32
# The label's meaning, in a prefix shared by every prompt of 64 tokens (SmolLM2's frame and
# tokenizer, up to "Title:"): the prefix cache keeps whole KV blocks, so with the CPU engine's
# 32-token blocks only reads in the engine's first step compute them; the short instruction's
# 27-token prefix filled no block. A test holds the prefix at a whole number of blocks.
_DEFINED_INSTRUCTION = (
    "Is this paper about cancer, that is, about a malignant neoplasm (carcinoma, sarcoma, "
    "lymphoma, leukemia, melanoma, glioma and others): its biology, causes, screening, "
    "diagnosis or treatment? Answer yes or no."
)
# The same 64-token prefix, with the label as MeSH's C04 Neoplasms draws it (OHSUMED's cancer
# label includes benign tumours, and tumour cell lines are indexed there): "malignant" in the
# defined instruction contradicts that label.
_NEOPLASM_INSTRUCTION = (
    "Is this paper about cancer or another neoplasm, malignant or benign (carcinoma, sarcoma, "
    "lymphoma, leukemia, melanoma, glioma, adenoma and others): its biology, causes, "
    "diagnosis or treatment? Answer yes or no."
)

TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in (
        PromptTemplate(
            name="cancer-yn-defined",
            revision=1,
            system=_SYSTEM,
            instruction=_DEFINED_INSTRUCTION,
            title_token_cap=64,
            abstract_token_cap=96,
            reread_abstract_cap=1024,
        ),
        PromptTemplate(
            name="cancer-yn-neoplasm",
            revision=1,
            system=_SYSTEM,
            instruction=_NEOPLASM_INSTRUCTION,
            title_token_cap=64,
            abstract_token_cap=96,
            reread_abstract_cap=1024,
        ),
        PromptTemplate(
            name="cancer-yn-short",
            revision=1,
            system=_SYSTEM,
            instruction=_INSTRUCTION,
            title_token_cap=64,
            abstract_token_cap=96,
            reread_abstract_cap=1024,
        ),
        PromptTemplate(
            name="cancer-yn-headtail",
            revision=1,
            system=_SYSTEM,
            instruction=_INSTRUCTION,
            title_token_cap=64,
            abstract_token_cap=96,
            abstract_tail_tokens=48,
        ),
        PromptTemplate(
            name="cancer-yn",
            revision=1,
            system=_SYSTEM,
            instruction=_INSTRUCTION,
            title_token_cap=64,
            abstract_token_cap=192,
        ),
    )
}
DEFAULT_TEMPLATE = "cancer-yn-defined"


def get_template(name: str = DEFAULT_TEMPLATE) -> PromptTemplate:
    """Raises KeyError naming the known templates when `name` is not one."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown prompt template {name!r}; known: {sorted(TEMPLATES)}") from None


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    truncated: bool


def chat_frame(hf_tokenizer: Any) -> str:
    """The model's chat template applied to placeholders (a transformers tokenizer)."""
    if not getattr(hf_tokenizer, "chat_template", None):
        return PLAIN_FRAME
    messages = [{"role": "system", "content": _SYS}, {"role": "user", "content": _USER}]
    return hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def write_prompt_frame(model_dir: Path, hf_tokenizer: Any) -> None:
    frame = chat_frame(hf_tokenizer)
    (model_dir / FRAME_FILE).write_text(json.dumps({"frame": frame}, indent=2))


# Characters per token that surely hold `cap` tokens (English prose runs ~4-5): beyond
# `cap` times this, only the text's beginning is tokenized to cap it.
HEAD_CHARS_PER_TOKEN = 8


def collapse_whitespace(text: str) -> str:
    """Every run of whitespace as one space, none at the ends: the form in which a template
    shows a title or abstract to the model (case and characters unchanged)."""
    return " ".join(text.split())


def _control_pattern(tokenizer: Tokenizer) -> re.Pattern[str] | None:
    """One regex matching every added special token's text (the tokenizer matches those in raw
    text and would turn them into control tokens), longest first."""
    specials = sorted({t.content for t in tokenizer.get_added_tokens_decoder().values()
                       if t.special and len(t.content) > 1}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, specials))) if specials else None


class PromptRenderer:
    """Renders a paper into the model's input text, capping title and abstract in tokens."""

    def __init__(self, template: PromptTemplate, frame: str, tokenizer: Tokenizer) -> None:
        if _SYS not in frame or _USER not in frame:
            raise ValueError("chat frame lacks its placeholders")
        self.template = template
        self.tokenizer = tokenizer
        self._frame = frame
        head, rest = frame.split(_SYS, 1)
        middle, tail = rest.split(_USER, 1)
        self._before_user = head + template.system + middle
        self._after_user = tail
        self._control = _control_pattern(tokenizer)
        self.label_token_ids = {
            label: self._single_token(word) for label, word in template.label_words.items()
        }

    @classmethod
    def from_files(cls, template: PromptTemplate, frame_file: Path,
                   tokenizer_file: Path) -> PromptRenderer:
        """From a stored chat frame (`prompt_frame.json`) and a `tokenizer.json`."""
        frame = json.loads(frame_file.read_text())["frame"]
        return cls(template, frame, Tokenizer.from_file(str(tokenizer_file)))

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False).ids
        if len(ids) != 1:
            raise ValueError(f"label word {word!r} is {len(ids)} tokens; it must be one")
        return ids[0]

    def _cap(self, text: str, cap: int | None, tail: int = 0) -> tuple[str, bool]:
        """Keep `cap` tokens: the first `cap - tail` and the last `tail`, joined by an
        ellipsis; cuts fall on token boundaries of the original text."""
        text = collapse_whitespace(text)
        if cap is None:
            return text, False
        if not tail and (head := self._head_if_longer(text, cap)) is not None:
            return head, True
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        n = len(encoding.ids)
        if n <= cap:
            return text, False
        head = text[: encoding.offsets[cap - tail - 1][1]]
        if not tail:
            return head, True
        start = encoding.offsets[n - tail][0]
        if start > 0 and not text[start - 1].isspace():  # mid-word: start at the next word
            start = text.find(" ", start) + 1 or len(text)
        return f"{head} ... {text[start:]}", True

    def _head_if_longer(self, text: str, cap: int) -> str | None:
        """The first `cap` tokens of a long text from tokenizing only its beginning (the
        serving hot path: most abstracts are several times the first read's cap); None when
        the text is not long enough to need it. Exact when the beginning ends at a space: the
        byte-level pre-tokenizer never joins across a space of whitespace-collapsed text, so
        the tokens before a space are those of the whole text (a test checks it on every
        paper). A text without a space near the cut (CJK, garbage) is cut mid-word: the tokens
        next to the cut may differ from the whole text's, but the work stays bounded (a
        98,000-character spaceless abstract was otherwise tokenized whole on the event loop)."""
        limit = cap * HEAD_CHARS_PER_TOKEN
        while len(text) > limit:
            cut = text.rfind(" ", 0, limit)
            if cut < limit // 2:
                cut = limit
            encoding = self.tokenizer.encode(text[:cut], add_special_tokens=False)
            if len(encoding.ids) > cap:
                return text[: encoding.offsets[cap - 1][1]]
            limit *= 4  # long tokens: look further
        return None

    def render(self, title: str, abstract: str) -> RenderedPrompt:
        title, title_cut = self._cap(self.defang(title), self.template.title_token_cap)
        abstract, abstract_cut = self._cap(self.defang(abstract),
                                           self.template.abstract_token_cap,
                                           self.template.abstract_tail_tokens)
        user = self.template.user_message(title, abstract)
        text = self._before_user + user + self._after_user
        return RenderedPrompt(text, title_cut or abstract_cut)

    def defang(self, text: str) -> str:
        """User text with the tokenizer's control strings (`<|im_end|>`, `<|im_start|>`, ...)
        broken by a space after their first character, so that a paper can never produce a
        control token and forge a turn of the conversation; other text is unchanged."""
        if self._control is None:
            return text
        return self._control.sub(lambda m: f"{m.group()[0]} {m.group()[1:]}", text)

    def reread_renderer(self) -> PromptRenderer | None:
        """The renderer of the template's second, longer read (same frame and tokenizer)."""
        template = self.template.reread()
        if template is None:
            return None
        return PromptRenderer(template, self._frame, self.tokenizer)

    def served_max_prompt_tokens(self) -> int:
        """An upper bound on any prompt serving sends for a paper: the first read's or, where
        the template has one, the second read's, whichever is longer (an engine's context is
        sized from it)."""
        reread = self.reread_renderer()
        return max(self.max_prompt_tokens(), reread.max_prompt_tokens() if reread else 0)

    def shared_prefix_tokens(self) -> int:
        """How many leading tokens every rendered prompt shares (frame, system, instruction,
        up to the title): what the engine's prefix cache can serve to every paper, in whole
        KV blocks."""
        first = self.tokenizer.encode(self.render("Alpha", "x").text).ids
        second = self.tokenizer.encode(self.render("Zeta", "y").text).ids
        return next(i for i, (a, b) in enumerate(zip(first, second, strict=False))
                    if a != b)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def max_prompt_tokens(self) -> int:
        """An upper bound on a rendered prompt's length (the engine's context is sized from it).
        Token counts can grow by a few at the seams where title/abstract meet the frame."""
        empty = self.count_tokens(self.render("", "").text)
        caps = self.template.title_token_cap + (self.template.abstract_token_cap or 4096)
        return empty + caps + 8
