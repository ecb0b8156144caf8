"""The autoencoder detector: a small PyTorch network that learns to reconstruct the standardised
encoded rows; a record it reconstructs badly (mean squared error) is anomalous.

It is meant for wide data (many encoded columns), where per-column tails (ECOD, COPOD) add up noise and
distances (kNN, LOF) concentrate; :data:`WIDE_COLUMNS` is where the family's default detector set takes
it in (``search.default_detectors``). Tiny and fast on a CPU: one hidden layer each side of a bottleneck
(``ae_hidden`` and ``ae_bottleneck``, searched), Adam, mini-batches of 256, at most :data:`MAX_EPOCHS`
epochs, early-stopped (the shared ``training.search.early_stopping_epochs``) on a seeded 10 % of the
rows it is fitted on, keeping the best epoch's weights.

Fitted, it keeps its weights as numpy arrays and scores with numpy: a served model never imports torch,
and the pickled detector holds no torch object. PyTorch is needed only to fit; without it the family
leaves the detector out of its default set and refuses it when ``anomaly.detectors`` names it.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import numpy as np

__all__ = ["MAX_EPOCHS", "WIDE_COLUMNS", "AutoencoderDetector", "torch_available"]

WIDE_COLUMNS = 20   # encoded columns from which the default detector set includes the autoencoder
MAX_EPOCHS = 40
PATIENCE = 5
_BATCH = 256
_CLIP = 10.0        # standardised values beyond +-10 are clipped: one huge outlier must not set the scale


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


class AutoencoderDetector:
    """``d -> hidden -> bottleneck -> hidden -> d`` with ReLU; score = mean squared reconstruction error."""

    def __init__(self, hidden: int = 16, bottleneck: int = 2, lr: float = 1e-2, seed: int = 0,
                 max_epochs: int = MAX_EPOCHS):
        self.hidden, self.bottleneck, self.lr, self.seed, self.max_epochs = hidden, bottleneck, lr, seed, max_epochs

    # ---- fitting (torch) ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray) -> AutoencoderDetector:
        import torch
        from torch import nn

        from ...training.search import early_stopping_epochs

        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.std_ = np.where(std > 0, std, 1.0)
        Z = self._standard(X).astype(np.float32)
        d = Z.shape[1]
        hidden = max(2, min(self.hidden, 2 * d))
        bottleneck = max(1, min(self.bottleneck, hidden, max(1, d // 2)))
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(Z))
        n_valid = max(1, len(Z) // 10) if len(Z) >= 20 else 0
        valid, fit = (Z[order[:n_valid]], Z[order[n_valid:]]) if n_valid else (Z, Z)
        net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, bottleneck), nn.ReLU(),
                            nn.Linear(bottleneck, hidden), nn.ReLU(), nn.Linear(hidden, d))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        fit_t, valid_t = torch.from_numpy(fit), torch.from_numpy(valid)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: one thread is fastest and does not fight the search's

        def run_epoch(epoch: int) -> tuple[float, dict[str, Any]]:
            net.train()
            perm = torch.from_numpy(rng.permutation(len(fit)))
            for i in range(0, len(fit), _BATCH):
                batch = fit_t[perm[i:i + _BATCH]]
                opt.zero_grad()
                loss = ((net(batch) - batch) ** 2).mean()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                return math.sqrt(float(((net(valid_t) - valid_t) ** 2).mean())), {}

        def snapshot() -> list[np.ndarray]:
            return [p.detach().numpy().astype(np.float64).copy() for p in net.parameters()]

        state: dict[str, Any] = {"epoch": 0, "history": [], "best": None, "best_score": None, "best_epoch": 0,
                                 "bad": 0}
        try:
            early_stopping_epochs(state, self.max_epochs, run_epoch, metric="rmse", patience=PATIENCE,
                                  deadline=math.inf, snapshot=snapshot, save=lambda: None)
        finally:
            torch.set_num_threads(threads)
        self.weights_ = state["best"] if state["best"] is not None else snapshot()
        self.epochs_, self.best_epoch_ = int(state["epoch"]), int(state["best_epoch"])
        return self

    # ---- scoring (numpy) ---------------------------------------------------------------------------
    def _standard(self, X: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(X, dtype=np.float64) - self.mean_) / self.std_, -_CLIP, _CLIP)

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        h = self._standard(X)
        w = self.weights_
        for layer in range(4):  # Linear weights are (out, in), biases (out,)
            h = h @ w[2 * layer].T + w[2 * layer + 1]
            if layer < 3:
                h = np.maximum(h, 0.0)
        return h

    def score(self, X: np.ndarray) -> np.ndarray:
        Z = self._standard(X)
        return ((self.reconstruct(X) - Z) ** 2).mean(axis=1)
