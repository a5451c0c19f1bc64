"""Translation quality by round trip (sacrebleu).

Each caption is translated to the target language and back to English; the sentence chrF of the
back-translation against the English original is the per-caption quality estimate stored in the
dataset. A build report gives, per language, the corpus BLEU and chrF of the round trip with their
sacrebleu signatures.
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF


def sentence_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    chrf = CHRF()
    return [float(chrf.sentence_score(h, [r]).score) for h, r in zip(hypotheses, references)]


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": round(b.score, 2),
        "chrf": round(c.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
