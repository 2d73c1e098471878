"""Classic baselines beside the LLM: what a reader needs to judge what the LLM adds."""

from __future__ import annotations

from preprocessing.papers import Paper

KEYWORDS = ("cancer", "tumo")  # tumor, tumour, tumours...


def _text(p: Paper) -> str:
    return f"{p.title} {p.abstract}"


def keyword_rule(papers: list[Paper]) -> list[float]:
    """1.0 when the title or abstract mentions a keyword (a hard rule: no graded confidence)."""
    return [1.0 if any(k in _text(p).lower() for k in KEYWORDS) else 0.0 for p in papers]


def tfidf_logreg(train: list[Paper], test: list[Paper], seed: int = 42) -> list[float]:
    """TF-IDF over word 1-2-grams + logistic regression, trained on `train` only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                          LogisticRegression(max_iter=2000, C=10.0, random_state=seed))
    model.fit([_text(p) for p in train], [p.label == "cancer" for p in train])
    return model.predict_proba([_text(p) for p in test])[:, 1].tolist()


def baseline_scores(train: list[Paper], test: list[Paper], seed: int = 42
                    ) -> dict[str, list[float]]:
    """P(cancer) per test paper of each baseline, trained on `train`."""
    return {"tfidf_logreg": tfidf_logreg(train, test, seed), "keyword_rule": keyword_rule(test)}

