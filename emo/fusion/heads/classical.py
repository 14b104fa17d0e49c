"""Classical baselines as heads: `logreg` and `svm` (scikit-learn) on statistics-pooled cached features.

Each clip becomes one vector: per input, the mean and the standard deviation over its real
frames of every cached (layer, dim) of the chosen layers (`--layers`), the inputs concatenated,
then standardised with the training clips' statistics (scikit-learn's StandardScaler). This is
the bar a neural head has to clear, fitted on the same splits and scored by the same code.

scikit-learn fits the model (`fit_sklearn`, called by `emo fit` instead of the training loop);
the fitted numbers are then copied into float64 buffers of the head, and scoring (`forward`)
recomputes scikit-learn's decision function and probabilities in torch from those arrays.

Why arrays and not a pickled estimator: a run directory is data that people share and download,
and unpickling a file runs whatever code it names; a pickle also breaks across scikit-learn
versions. The buffers go to safetensors like every other head's weights (hyperparameters and
shapes in JSON), so loading a run never executes anything from it.

    logreg  LogisticRegression(C, lbfgs, multinomial): probabilities = softmax(z W^T + b).
    svm     SVC(kernel="rbf", C, gamma) one-vs-one, calibrated by CalibratedClassifierCV(method=
            "sigmoid", ensemble=False): stored are the support vectors, the dual coefficients, the
            intercepts, gamma and one sigmoid (a, b) per class on the one-vs-rest decision function.
            (SVC(probability=True) is deprecated since scikit-learn 1.9; its predict can disagree
            with its own probabilities.) The predicted class is the most probable one, as for
            every emo head.
"""

from __future__ import annotations

import time
import weakref

import numpy as np
import torch

from emo.errors import EmoError
from emo.fusion.heads.registry import MODALITIES, Head, Requires, register_head
from emo.fusion.params import Param

# Probabilities are floored here before the log: a calibrated probability can be exactly 0.
_FLOOR = 1e-300


# Values per float64 temporary in the pooling: clips are pooled a few at a time, so that a batch of
# long clips of wide features (whisper: 7 x 512 per frame) never becomes a multi-GB float64 copy.
POOL_CHUNK_VALUES = 1 << 22


# Pooled statistics of every clip of a loaded modality, kept while its tensor lives: they do not
# depend on the fold, so the folds of a k-fold fit and the runs of a sweep pool each clip once.
# Keyed by id() (a tensor's == is elementwise), each entry dropped when its tensor is freed.
_CLIP_STATISTICS: dict[int, tuple] = {}


def pooled_statistics(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, L, D) frames + (B, T) mask -> (B, 2*L*D) float64: masked mean then std (ddof 0) per (layer, dim).

    float64, because these are the features scikit-learn is fitted on and compared with.
    """
    step = max(1, POOL_CHUNK_VALUES // max(1, x[0].numel() if len(x) else 1))
    if len(x) > step:
        return torch.cat([pooled_statistics(x[i : i + step], mask[i : i + step]) for i in range(0, len(x), step)])
    x = x.double()
    weight = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    count = weight.sum(dim=1).clamp(min=1.0)
    mean = (x * weight).sum(dim=1) / count
    var = (((x - mean.unsqueeze(1)) * weight) ** 2).sum(dim=1) / count
    return torch.cat([mean.flatten(1), var.sqrt().flatten(1)], dim=1)


class ClassicalHead(Head):
    """Statistics pooling -> standardisation -> a scikit-learn model stored as arrays."""

    requires = Requires(MODALITIES, 1, 3)  # cached encoder features only: raw face crops have no frame vectors
    fitted_by_sklearn = True
    model_buffers: tuple[str, ...] = ()

    def __init__(self, inputs, n_classes, **hparams):
        super().__init__(inputs, n_classes, **hparams)
        self.keys = list(self.inputs)
        self.n_features = sum(2 * spec.row_shape[0] * spec.row_shape[1] for spec in self.inputs.values())
        f64 = torch.float64
        self.register_buffer("scaler_mean", torch.zeros(self.n_features, dtype=f64))
        self.register_buffer("scaler_scale", torch.ones(self.n_features, dtype=f64))
        for name in self.model_buffers:  # sized when fitted (or when a saved run is loaded)
            self.register_buffer(name, torch.zeros(0, dtype=f64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The fitted arrays' sizes (support vectors, ...) are known only from the file: take them from it.
        for name in self.model_buffers:
            stored = state_dict.get(prefix + name)
            if stored is not None:
                self._buffers[name] = torch.empty_like(stored, device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def features(self, batch: dict) -> torch.Tensor:
        """(B, n_features) float64 pooled statistics, inputs in the head's order."""
        missing = [k for k in self.keys if k not in batch]
        if missing:
            raise EmoError(f"head {self.name!r} needs its {', '.join(missing)} input(s) in every batch")
        return torch.cat([pooled_statistics(*batch[k]) for k in self.keys], dim=1)

    def forward(self, batch: dict) -> torch.Tensor:
        z = (self.features(batch) - self.scaler_mean) / self.scaler_scale
        return self.log_probabilities(z)

    def log_probabilities(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- fitting -----------------------------------------------------------------------------
    def estimator(self, seed: int, n_train_per_class: np.ndarray, class_weight: str | None):
        raise NotImplementedError

    def take_fitted(self, fitted) -> None:
        raise NotImplementedError

    def probabilities(self, data, keys, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_classes) float64 probabilities of cached clips (what `forward` gives, from pooled features)."""
        z = (torch.from_numpy(pooled_features(self, data, keys, rows)).to(self.scaler_mean.device) - self.scaler_mean) / self.scaler_scale
        with torch.no_grad():
            return self.log_probabilities(z).exp().cpu().numpy()

    def fit_sklearn(self, data, keys, labels, train_rows, val_rows, seed: int, device, class_weights: str = "none"):
        """Fit on the training rows (validation rows only scored); returns emo.fusion.train.FoldTraining.

        class_weights "balanced": scikit-learn's class_weight="balanced" (inverse training class frequency).
        """
        from sklearn.preprocessing import StandardScaler

        from emo.fusion.metrics import weighted_f1
        from emo.fusion.train import FoldTraining

        started = time.perf_counter()
        y = labels[train_rows]
        counts = np.bincount(y, minlength=self.n_classes)
        if (counts == 0).any():
            absent = ", ".join(str(i) for i in np.flatnonzero(counts == 0))
            raise EmoError(f"head {self.name!r}: no training clip of class index {absent} in this split")
        x = pooled_features(self, data, keys, train_rows)
        scaler = StandardScaler().fit(x)
        weight = "balanced" if class_weights == "balanced" else None
        fitted = self.estimator(seed, counts, weight).fit(scaler.transform(x), y)
        self.scaler_mean.copy_(torch.from_numpy(scaler.mean_))
        self.scaler_scale.copy_(torch.from_numpy(scaler.scale_))
        self.take_fitted(fitted)
        self.to(device).eval()
        def loss(probs, rows):  # mean cross-entropy, as the training loop reports it
            return float(-np.log(np.clip(probs[np.arange(len(rows)), labels[rows]], 1e-300, None)).mean())

        record = {"epoch": 1, "train_loss": loss(self.probabilities(data, keys, train_rows), train_rows)}
        result = FoldTraining(best_epoch=1)
        if len(val_rows):
            probs = self.probabilities(data, keys, val_rows)
            record["val_loss"] = loss(probs, val_rows)
            record["val_weighted_f1"] = result.best_val_weighted_f1 = weighted_f1(labels[val_rows], probs.argmax(1))
        record["seconds"] = result.seconds = time.perf_counter() - started
        result.history.append(record)
        return result


def clip_statistics(modality, batch_size: int = 32) -> np.ndarray:
    """(clips, 2*L*D) float64 pooled statistics of every clip of a loaded modality (memoised per tensor)."""
    held = _CLIP_STATISTICS.get(id(modality.data))
    if held is not None and held[0]() is modality.data and held[1] is modality.starts and np.array_equal(
            held[2], modality.lengths):
        return held[3]
    rows = np.arange(len(modality.lengths))
    parts = [pooled_statistics(*modality.gather(rows[s : s + batch_size])).cpu() for s in range(0, len(rows), batch_size)]
    width = 2 * int(np.prod(modality.row_shape))
    values = torch.cat(parts).numpy() if parts else np.zeros((0, width))
    if id(modality.data) not in _CLIP_STATISTICS:
        weakref.finalize(modality.data, _CLIP_STATISTICS.pop, id(modality.data), None)
    _CLIP_STATISTICS[id(modality.data)] = (weakref.ref(modality.data), modality.starts, modality.lengths.copy(), values)
    return values


def pooled_features(head: ClassicalHead, data, keys, rows: np.ndarray) -> np.ndarray:
    """(len(rows), n_features) float64 pooled statistics of cached clips, inputs in the head's order."""
    missing = [k for k in head.keys if k not in keys]
    if missing:
        raise EmoError(f"head {head.name!r} needs its {', '.join(missing)} input(s)")
    return np.concatenate([clip_statistics(data.modalities[k])[rows] for k in head.keys], axis=1)


@register_head
class LogRegHead(ClassicalHead):
    name = "logreg"
    description = "baseline: mean+std pooled features, standardised, scikit-learn logistic regression"
    defaults = {"C": 1.0, "max_iter": 1000}
    params = {
        "C": Param(float, 0.0, 1e6, lo_open=True, help="inverse L2 regularisation strength"),
        "max_iter": Param(int, 1, 1_000_000, help="lbfgs iterations"),
    }
    model_buffers = ("coef", "intercept")

    def estimator(self, seed, n_train_per_class, class_weight):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.hparams["C"], max_iter=self.hparams["max_iter"], class_weight=class_weight,
                                  random_state=seed)

    def take_fitted(self, fitted) -> None:
        self.coef = torch.from_numpy(np.asarray(fitted.coef_, dtype=np.float64).copy())
        self.intercept = torch.from_numpy(np.asarray(fitted.intercept_, dtype=np.float64).copy())

    def log_probabilities(self, z):
        logits = z @ self.coef.T + self.intercept
        if logits.shape[1] == 1:  # binary: scikit-learn keeps one row, the second class's logit against 0
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        return torch.log_softmax(logits, dim=1)


@register_head
class SVMHead(ClassicalHead):
    name = "svm"
    description = "baseline: mean+std pooled features, standardised, scikit-learn RBF SVM (sigmoid-calibrated)"
    # gamma None: scikit-learn's "scale", 1 / (n_features * variance of the standardised features).
    defaults = {"C": 1.0, "gamma": None}
    params = {
        "C": Param(float, 0.0, 1e6, lo_open=True, help="SVM penalty"),
        "gamma": Param(float, 0.0, 1e6, lo_open=True, optional=True, help='RBF width (none: scikit-learn\'s "scale")'),
    }
    model_buffers = ("support_vectors", "dual_coef", "svm_intercept", "n_support", "gamma", "sigmoid_a", "sigmoid_b")

    def estimator(self, seed, n_train_per_class, class_weight):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        folds = int(min(5, n_train_per_class.min()))
        if folds < 2:
            raise EmoError(f"head 'svm': its probability calibration needs >= 2 training clips per class, "
                           f"got {n_train_per_class.min()}")
        gamma = "scale" if self.hparams["gamma"] is None else self.hparams["gamma"]
        svc = SVC(kernel="rbf", C=self.hparams["C"], gamma=gamma, class_weight=class_weight, random_state=seed)
        return CalibratedClassifierCV(svc, method="sigmoid", ensemble=False, cv=folds)

    def take_fitted(self, fitted) -> None:
        (calibrated,) = fitted.calibrated_classifiers_
        svc = calibrated.estimator

        def as_tensor(value):
            return torch.from_numpy(np.array(value, dtype=np.float64, ndmin=1))

        self.support_vectors = as_tensor(svc.support_vectors_)
        self.dual_coef = as_tensor(svc.dual_coef_)
        self.svm_intercept = as_tensor(svc.intercept_)
        self.n_support = as_tensor(svc.n_support_)
        self.gamma = as_tensor(svc._gamma)  # the resolved value ("scale" -> a number)
        self.sigmoid_a = as_tensor([c.a_ for c in calibrated.calibrators])
        self.sigmoid_b = as_tensor([c.b_ for c in calibrated.calibrators])

    def pair_coefficients(self) -> torch.Tensor:
        """(n_SV, pairs) weights: column (i, j) holds the dual coefficients of classes i and j's support vectors.

        libsvm's layout: support vectors grouped by class; for the pair (i < j) a vector of class i
        weighs with dual_coef[j - 1], one of class j with dual_coef[i].
        """
        k = self.n_classes
        ends = torch.cumsum(self.n_support.long(), 0).tolist()
        starts = [0, *ends[:-1]]
        columns = []
        for i in range(k):
            for j in range(i + 1, k):
                column = torch.zeros(self.support_vectors.shape[0], dtype=torch.float64, device=self.dual_coef.device)
                column[starts[i] : ends[i]] = self.dual_coef[j - 1, starts[i] : ends[i]]
                column[starts[j] : ends[j]] = self.dual_coef[i, starts[j] : ends[j]]
                columns.append(column)
        return torch.stack(columns, dim=1)

    def decision_function(self, z: torch.Tensor) -> torch.Tensor:
        """(B, pairs) one-vs-one decision values, as SVC.decision_function(decision_function_shape="ovo")."""
        sv = self.support_vectors
        squared = ((z * z).sum(1, keepdim=True) + (sv * sv).sum(1) - 2.0 * z @ sv.T).clamp(min=0)
        return torch.exp(-self.gamma * squared) @ self.pair_coefficients() + self.svm_intercept

    def ovr_decision(self, dec: torch.Tensor) -> torch.Tensor:
        """scikit-learn's one-vs-rest shape of one-vs-one values: votes + confidences squashed into (-1/3, 1/3)."""
        k = self.n_classes
        votes = dec.new_zeros(dec.shape[0], k)
        confidence = dec.new_zeros(dec.shape[0], k)
        p = 0
        for i in range(k):
            for j in range(i + 1, k):
                votes[:, i] += (dec[:, p] >= 0).to(dec.dtype)  # dec >= 0 votes for the first class of the pair
                votes[:, j] += (dec[:, p] < 0).to(dec.dtype)
                confidence[:, i] += dec[:, p]
                confidence[:, j] -= dec[:, p]
                p += 1
        return votes + confidence / (3 * (confidence.abs() + 1))

    def log_probabilities(self, z):
        dec = self.decision_function(z)
        if self.n_classes == 2:  # one calibrator, for the second class, on the raw decision value
            positive = torch.sigmoid(-(self.sigmoid_a * dec[:, 0] + self.sigmoid_b))
            probs = torch.stack([1.0 - positive, positive], dim=1)
        else:
            probs = torch.sigmoid(-(self.sigmoid_a * self.ovr_decision(dec) + self.sigmoid_b))
            total = probs.sum(1, keepdim=True)
            probs = torch.where(total > 0, probs / total.clamp(min=_FLOOR), torch.full_like(probs, 1.0 / self.n_classes))
        return probs.clamp(min=_FLOOR).log()
