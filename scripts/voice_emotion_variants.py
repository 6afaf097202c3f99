"""Measure candidate voice emotion models against the shipped one, all with nested LOSO.

    python scripts/voice_emotion_variants.py                  # every variant (~15 min, 2 cores)
    python scripts/voice_emotion_variants.py compare_delta_lr # one

Not a trainer: it writes nothing but the feature cache. Each variant's hyper-parameters (C,
number of features kept by an ANOVA F ranking, class weights) are chosen by an inner
leave-one-speaker-out on the training speakers of each outer fold, so no figure saw its test
speaker. The CREMA-D check refits on all EmoDB (hyper-parameters by LOSO on EmoDB) and scores the
12 clips against the crowd's voice-only vote, as scripts/train_voice_emotion.py does. Figures and
the reasons nothing here shipped: docs/models/voice-emotion.md.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_voice_emotion as t  # noqa: E402

COMPARE_PREFIX = "compare2016-"  # cache files of the 6373 ComParE_2016 functionals


def compare_functionals(path: Path) -> dict[str, float]:
    """ComParE_2016 functionals of the Silero-VAD speech span, cached like the eGeMAPS ones."""
    import opensmile

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = t.CACHE / f"{COMPARE_PREFIX}{digest}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    audio = t.decode(path)
    span = t.speech_span(audio)
    speech = audio[span[0] : span[1]] if span else audio
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    row = smile.process_signal(speech, t.ve.SR).iloc[0]
    feats = {k: float(v) for k, v in row.items()}
    t.CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(feats))
    return feats


def fit_proba(Xtr, ytr, Xte, c: float, k: int, weights: str | None, algo: str) -> np.ndarray:
    """z-score (clipped at 6 SD, as the runtime does), keep the k best-F features, fit, score."""
    from sklearn.feature_selection import f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-9
    Z, Zt = np.clip((Xtr - mu) / sd, -6, 6), np.clip((Xte - mu) / sd, -6, 6)
    if k and k < Z.shape[1]:
        keep = np.argsort(-np.nan_to_num(f_classif(Z, ytr)[0]))[:k]
        Z, Zt = Z[:, keep], Zt[:, keep]
    if algo == "lr":
        lr = LogisticRegression(C=c, max_iter=3000, class_weight=weights, random_state=t.SEED)
        return lr.fit(Z, ytr).predict_proba(Zt)
    svm = LinearSVC(C=c, class_weight=weights, max_iter=20000, random_state=t.SEED)
    d = svm.fit(Z, ytr).decision_function(Zt)  # softmax of the margins
    p = np.exp(d - d.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def grid(cs, ks, weights=None, algo="lr") -> list[tuple]:
    return [(c, k, weights, algo) for c in cs for k in ks]


EG = grid([0.1, 0.3, 1], [0])  # the shipped model's grid, all 88 features
VARIANTS: dict[str, list[tuple[str, list[tuple]]]] = {  # name: [(feature set, grid)], averaged
    "egemaps_lr": [("egemaps", EG)],
    "egemaps_lr_balanced": [("egemaps", grid([0.1, 0.3, 1], [0], "balanced"))],
    "compare_lr": [("compare", grid([0.01, 0.1], [100, 300, 1000]))],
    "compare_lr_balanced": [("compare", grid([0.01, 0.1], [100, 300, 1000], "balanced"))],
    "compare_linear_svm": [("compare", grid([0.001, 0.01], [100, 300, 1000], None, "svm"))],
    "compare_delta_lr": [("compare_delta", grid([0.01, 0.1], [300]))],
    "compare_delta_lr_k": [("compare_delta", grid([0.01, 0.1], [100, 300, 1000]))],
    "mean_egemaps_compare": [("egemaps", EG), ("compare", grid([0.01, 0.1], [100, 300, 1000]))],
    "mean_egemaps_compare_delta": [("egemaps", EG), ("compare_delta", grid([0.01, 0.1], [300]))],
    "mean_egemaps_compare_delta_k": [
        ("egemaps", EG),
        ("compare_delta", grid([0.01, 0.1], [100, 300, 1000])),
    ],
}


class Data:
    def __init__(self) -> None:
        emodb = [r for r in t.emodb() if r["emotion"] != "boredom"]  # as the shipped model
        crema = t.cremad()
        self.y = np.array([r["emotion"] for r in emodb], dtype=object)
        self.spk = np.array([r["speaker"] for r in emodb])
        self.classes = sorted(set(self.y))
        self.votes = np.array(
            [t.CREMA_VOTE[r["votes_voice_only"].split()[0].split(":")[0]] for r in crema]
        )
        self.crema_files = [r["file"] for r in crema]
        eg = sorted(emodb[0]["x"])
        self.sets = {"egemaps": (t.matrix(emodb, eg), t.matrix(crema, eg))}
        ce = [compare_functionals(t.DATA / "emodb" / r["file"]) for r in emodb]
        cc = [compare_functionals(t.DATA / "cremad" / r["file"]) for r in crema]
        names = sorted(ce[0])
        Xe = np.nan_to_num(np.array([[f[n] for n in names] for f in ce]))
        Xc = np.nan_to_num(np.array([[f[n] for n in names] for f in cc]))
        self.sets["compare"] = (Xe, Xc)
        delta = [i for i, n in enumerate(names) if "_de_" in n]  # functionals of LLD deltas
        self.sets["compare_delta"] = (Xe[:, delta], Xc[:, delta])

    def uar(self, y, pred) -> float:
        return t.uar(y, pred, self.classes)

    def loso_proba(self, X, y, spk, hp) -> np.ndarray:
        P = np.zeros((len(y), len(self.classes)))
        for s in np.unique(spk):
            tr, te = spk != s, spk == s
            P[te] = fit_proba(X[tr], y[tr], X[te], *hp)
        return P

    def choose(self, X, y, spk, hps) -> tuple:
        """Inner LOSO; ties go to the first (smallest C, fewest features) in the grid."""
        scores = [
            self.uar(y, np.array(self.classes)[self.loso_proba(X, y, spk, hp).argmax(1)])
            for hp in hps
        ]
        return hps[int(np.argmax(scores))]

    def run(self, specs) -> str:
        y, spk, cls = self.y, self.spk, np.array(self.classes)
        P = np.zeros((len(y), len(cls)))
        for s in np.unique(spk):
            tr, te = spk != s, spk == s
            for fset, hps in specs:
                X = self.sets[fset][0]
                hp = self.choose(X[tr], y[tr], spk[tr], hps)
                P[te] += fit_proba(X[tr], y[tr], X[te], *hp) / len(specs)
        pred = cls[P.argmax(1)]
        lo, hi = t.bootstrap(y, pred, self.classes)
        Pc, final = np.zeros((len(self.votes), len(cls))), []
        for fset, hps in specs:
            X, Xc = self.sets[fset]
            hp = self.choose(X, y, spk, hps)
            final.append(f"{fset} C={hp[0]} k={hp[1] or 'all'}")
            Pc += fit_proba(X, y, Xc, *hp) / len(specs)
        pc = cls[Pc.argmax(1)]
        recall = ", ".join(f"{k} {np.mean(pred[y == k] == k):.3f}" for k in self.classes)
        return (
            f"EmoDB nested LOSO UAR {self.uar(y, pred):.3f} [95% CI {lo:.3f}-{hi:.3f}], "
            f"accuracy {np.mean(pred == y):.3f}; recall {recall}\n"
            f"  CREMA-D vs voice-only votes {int(np.sum(pc == self.votes))}/{len(pc)} "
            f"({'; '.join(final)}): {' '.join(pc)}"
        )


def main() -> None:
    warnings.filterwarnings("ignore")  # constant ComParE columns in some folds (F = 0/0)
    names = sys.argv[1:] or list(VARIANTS)
    unknown = set(names) - set(VARIANTS)
    if unknown:
        sys.exit(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    data = Data()
    for name in names:
        print(f"{name}: {data.run(VARIANTS[name])}", flush=True)


if __name__ == "__main__":
    main()
