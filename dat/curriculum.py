"""The curriculum on the number of contrastive PGD steps T (stage 2 of DAT).

Following the authors' training recipe (protocol.md, "Curriculum on T"): T starts small; a window of
per-batch AUCs (real images vs contrastive samples, scored by f(x)[y]) is kept until it covers at least
``window_images`` images; when the window is full and its mean AUC reaches ``auc_threshold`` the energy
separates real from contrastive samples too easily, so T grows by ``increment`` (up to ``max_steps``) and the
window restarts. A full window below the threshold slides (the oldest batch drops out).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class StepCurriculum:
    """State of the T curriculum; plain data so that it round-trips through a checkpoint.

    Attributes:
        steps: current T.
        max_steps: T never grows past this.
        auc_threshold: mean window AUC at or above which T grows.
        window_images: images the window must cover before it is judged.
        increment: how much T grows at a time.
    """

    steps: int
    max_steps: int
    auc_threshold: float
    window_images: int
    increment: int = 1
    _window: deque = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.steps <= self.max_steps:
            raise ValueError(f"initial steps {self.steps} must lie in [0, max_steps={self.max_steps}]")
        if self.increment < 1 or self.window_images < 1:
            raise ValueError("increment and window_images must be >= 1")

    @property
    def window_mean(self) -> float:
        """Mean AUC over the window, weighted by batch size (NaN while empty)."""
        n = sum(k for _, k in self._window)
        return sum(a * k for a, k in self._window) / n if n else float("nan")

    def update(self, auc: float, n_images: int) -> bool:
        """Add one batch's AUC; return True when T grew."""
        self._window.append((float(auc), int(n_images)))
        while len(self._window) > 1 and sum(k for _, k in self._window) - self._window[0][1] >= self.window_images:
            self._window.popleft()  # keep the smallest suffix that still covers window_images
        full = sum(k for _, k in self._window) >= self.window_images
        if full and self.window_mean >= self.auc_threshold and self.steps < self.max_steps:
            self.steps = min(self.steps + self.increment, self.max_steps)
            self._window.clear()
            return True
        return False

    def state_dict(self) -> dict:
        return {"steps": self.steps, "window": [list(item) for item in self._window]}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self._window = deque((float(a), int(k)) for a, k in state["window"])
