from pathlib import Path

import pytest

from preprocessing.prompts import TEMPLATES, PromptRenderer


@pytest.fixture(scope="module")
def renderer(base_model_dir: Path) -> PromptRenderer:
    return PromptRenderer.from_model_dir(base_model_dir)


def test_label_words_are_single_distinct_tokens(renderer: PromptRenderer) -> None:
    ids = renderer.label_token_ids
    assert set(ids) == {"cancer", "non_cancer"} and len(set(ids.values())) == 2


def test_render_uses_chat_template_and_puts_instruction_first(renderer) -> None:
    text = renderer.render("A title", "An abstract.").text
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>assistant\n")
    assert text.index(renderer.template.instruction) < text.index("A title")


def test_abstract_cap_truncates_at_token_boundary(renderer: PromptRenderer) -> None:
    cap = renderer.template.abstract_token_cap
    long_abstract = " ".join(f"word{i}" for i in range(2000))
    short = renderer.render("T", "short abstract")
    long = renderer.render("T", long_abstract)
    assert not short.truncated and long.truncated
    kept = long.text.split("Abstract: ", 1)[1].split("<|im_end|>")[0]
    assert long_abstract.startswith(kept)
    assert renderer.count_tokens(kept) <= cap
    assert renderer.count_tokens(long.text) <= renderer.max_prompt_tokens()


def test_training_and_serving_render_identically(base_model_dir: Path) -> None:
    # Two independently loaded renderers (as training and the gateway load them) agree byte
    # for byte, including on odd input.
    a = PromptRenderer.from_model_dir(base_model_dir)
    b = PromptRenderer.from_model_dir(base_model_dir)
    for title, abstract in [("T", "A"), ("Ünïcode  title\t", "line1\nline2 \x07 ctrl"),
                            ("癌症研究", "肿瘤 " * 500)]:
        assert a.render(title, abstract) == b.render(title, abstract)


def test_template_versions_are_unique_and_include_caps() -> None:
    versions = [t.version for t in TEMPLATES.values()]
    assert len(set(versions)) == len(versions)
    for t in TEMPLATES.values():
        assert f"a{t.abstract_token_cap}" in t.version
