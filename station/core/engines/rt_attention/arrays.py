"""The fitted RT-attention engine as named arrays for a recipe's safetensors file, and back."""

from __future__ import annotations

import numpy as np

from station.core.engines.rt_attention.maths import ModeSpace
from station.core.engines.rt_attention.shift import CHROMA_TOKENS
from station.core.engines.rt_attention.tokens import CONTEXT
from station.core.errors import EngineError
from station.core.engines.rt import METRIC_SETS, UnitSpace


class RecipeArrays:
    """The part of `RTAttentionEngine` that saves what it learned and restores it."""

    def arrays(self) -> dict[str, np.ndarray]:
        out = self.good.arrays("good.")
        if self.n_parts > 1 and self.good_parts is not None:
            out.update(self.good_parts.arrays("good_parts."))
        if self.config["detect"] != "tokens" and self.detect_space is not None:
            out.update(self.detect_space.arrays("detect."))
        for name, mode in self.modes.items():
            out.update({f"mode.{name}.standard": mode.standard, f"mode.{name}.mean": mode.mean,
                        f"mode.{name}.whiten": mode.whiten})
        if self.keys is not None and self.key_labels is not None:
            out.update({"keys.tokens": self.keys, "keys.labels": self.key_labels})
        if self.shift_keys is not None and self.shift_good is not None:
            out.update({"shift.keys": self.shift_keys, "shift.labels": self.shift_labels.astype(np.int32),
                        "shift.good": self.shift_good})
            if self.chroma_standard is not None:
                out["shift.chroma"] = self.chroma_standard.astype(np.float32)
        if self.confusion is not None:
            out["join.confusion"] = self.confusion.astype(np.float32)
        # class names in order, as code points (safetensors holds numbers only)
        out["classes"] = np.array([ord(ch) for ch in "\n".join(self.classes or ["good"])], dtype=np.int32)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._rt.load_arrays(arrays)
        parts = self._rt.unit_space
        if self.n_parts > 1:
            parts = UnitSpace.from_arrays(arrays, "good_parts.", self.config["metrics"])
            if parts.standard.shape != (self.grid.n_cells * self.n_parts, self.grid.cell_px ** 2 // self.n_parts):
                raise EngineError("rt-attention arrays: the block unit space is for another grid or parts setting")
        self._set_good(self._rt.unit_space, parts)
        self.detect_space = None
        if self.config["detect"] != "tokens":
            if "detect.standard" not in arrays:  # a recipe from before the block detector: its tokens' score
                self.config["detect"] = "tokens"
            else:
                dp = self.config["detect_parts"]
                self.detect_space = UnitSpace.from_arrays(arrays, "detect.", self.config["metrics"])
                if self.detect_space.standard.shape != (self.grid.n_cells * dp[0] * dp[1],
                                                        self.grid.cell_px ** 2 // (dp[0] * dp[1])):
                    raise EngineError("rt-attention arrays: the detector's unit space is for another grid or "
                                      "detect_parts setting")
        codes = arrays.get("classes")
        if codes is None or codes.ndim != 1:
            raise EngineError("rt-attention arrays: the class list is missing")
        self.classes = "".join(chr(int(c)) for c in codes).split("\n")
        n, k = self.good.standard.shape
        m = len(METRIC_SETS[self.config["metrics"]])
        self.modes = {}
        for name in self.classes[1:]:
            try:
                mode = ModeSpace(*(arrays[f"mode.{name}.{part}"] for part in ("standard", "mean", "whiten")))
            except KeyError as exc:
                raise EngineError(f"rt-attention arrays: {exc.args[0]} is missing") from None
            p = self.n_parts
            if mode.standard.shape != (n, k) or mode.mean.shape != (p, m) or mode.whiten.shape != (p, m, m):
                raise EngineError(f"rt-attention arrays: mode {name!r} has inconsistent shapes")
            self.modes[name] = mode
        if self.fallback:
            self.keys = self.key_labels = None
            return
        keys, key_labels = arrays.get("keys.tokens"), arrays.get("keys.labels")
        width = m * self.n_parts * len(self.standards) * len(CONTEXT[self.config["context"]])
        if keys is None or key_labels is None or keys.ndim != 2 or keys.shape[1] != width \
                or key_labels.shape != (len(keys),) or key_labels.min() < 0 or key_labels.max() >= len(self.classes):
            raise EngineError("rt-attention arrays: the reference cells are missing or of the wrong shape")
        self.keys, self.key_labels = keys, key_labels.astype(np.int64)
        self._set_shift(None, None, None)
        self.chroma_standard = None
        if int(self.config["shift_px"]) > 0:
            if "shift.keys" not in arrays:  # a recipe from before the displacement head: the RT head alone
                self.config["shift_px"] = 0
            else:
                sk, sl, sg = arrays["shift.keys"], arrays.get("shift.labels"), arrays.get("shift.good")
                w = self.shift_width
                if sl is None or sg is None or sk.ndim != 2 or sk.shape[1] != w or sl.shape != (len(sk),) \
                        or (len(sl) and (sl.min() < 1 or sl.max() >= len(self.classes))) \
                        or sg.ndim != 3 or sg.shape[1:] != (self.grid.n_cells, w) or not len(sg) \
                        or not (np.all(np.isfinite(sk)) and np.all(np.isfinite(sg))):
                    raise EngineError("rt-attention arrays: the displacement head's reference tokens are missing "
                                      "or of the wrong shape")
                self._set_shift(sk, sl.astype(np.int64), sg)
                if self.config["shift_token"] in CHROMA_TOKENS:
                    cs = arrays.get("shift.chroma")
                    if cs is None or cs.shape != (self.grid.n_cells, self.grid.cell_px ** 2) \
                            or not np.all(np.isfinite(cs)):
                        raise EngineError("rt-attention arrays: the displacement head's chroma standard is missing "
                                          "or of the wrong shape")
                    self.chroma_standard = cs.astype(np.float32)
        self.confusion = None
        conf = arrays.get("join.confusion")
        if conf is not None and self.config["join"] == "confusion" and self.shift_keys is not None:
            c = len(self.classes)
            if conf.shape != (2, c, c) or not np.all(np.isfinite(conf)) or conf.min() < 0 \
                    or not np.allclose(conf.sum(axis=-1), 1.0, atol=1e-3):
                raise EngineError(f"rt-attention arrays: the heads' confusion matrices must be (2, {c}, {c}) "
                                  "rows of probabilities")
            self.confusion = conf.astype(np.float64)
        self._prepare()
