"""Optional audiomentations chain on source parts: parameters drawn once, recorded, applied.

`AugmentChain.draw(seed, sample_rate)` chooses what each transform does (whether it applies, its
gain, semitones, rate, cutoff, noise level ...) when a recipe is planned; the recipe stores that
record, and `AugmentChain.apply(x, sample_rate, params)` applies exactly it when the recipe is
rendered (teminal.pipeline.compose rebuilds the chain from the record's spec), so rendering
never draws a parameter. audiomentations draws from Python's global `random` module and numpy's global `np.random` (filter cutoffs, the noise itself): both
are seeded from the record's seed around each step, and restored, under a lock, so the result
depends on the record only and the caller's global random state is left exactly as it was.
A noise level relative to the signal ("snr") is recorded as noise std per unit of the part's
RMS and scaled by the part's RMS when applied.

Apply it after loudness normalisation of the part: a level change before normalisation cancels.
Time reversal is deliberately absent: it would contradict the `reversed` relation's meaning.
"""
from __future__ import annotations

import random
import threading
from contextlib import contextmanager
from typing import Any

import numpy as np

# name -> (audiomentations class, default keyword arguments)
TRANSFORMS: dict[str, tuple[str, dict[str, Any]]] = {
    "gain": ("Gain", {"min_gain_db": -6.0, "max_gain_db": 6.0, "p": 0.5}),
    "pitch": ("PitchShift", {"min_semitones": -2.0, "max_semitones": 2.0, "p": 0.5}),
    "stretch": ("TimeStretch", {"min_rate": 0.9, "max_rate": 1.1, "leave_length_unchanged": True,
                                "p": 0.5}),
    "noise": ("AddGaussianNoise", {"min_amplitude": 0.001, "max_amplitude": 0.01, "p": 0.5}),
    "snr": ("AddGaussianSNR", {"min_snr_db": 20.0, "max_snr_db": 40.0, "p": 0.5}),
    "lowpass": ("LowPassFilter", {"min_cutoff_freq": 2000.0, "max_cutoff_freq": 8000.0, "p": 0.5}),
    "highpass": ("HighPassFilter", {"min_cutoff_freq": 20.0, "max_cutoff_freq": 400.0, "p": 0.5}),
}

_GLOBAL_RNG_LOCK = threading.Lock()


def parse_spec(spec) -> list[tuple[str, dict[str, Any]]]:
    """Normalise a chain spec to [(name, full keyword arguments)], in order.

    Accepted: None / "" / "none" (no augmentation); "gain,pitch,noise"; a list of names or of
    (name, overrides) pairs; a dict {name: overrides or None}; the `spec` recorded in params."""
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec.strip().lower() in ("", "none"):
            return []
        items = [(s.strip(), None) for s in spec.split(",") if s.strip()]
    elif isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = [(s, None) if isinstance(s, str) else tuple(s) for s in spec]
    steps, seen = [], set()
    for name, overrides in items:
        if name not in TRANSFORMS:
            raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(TRANSFORMS)}")
        if name in seen:
            raise ValueError(f"augmentation {name!r} appears twice in {spec!r}")
        seen.add(name)
        defaults = TRANSFORMS[name][1]
        unknown = set(overrides or {}) - set(defaults)
        if unknown:
            raise ValueError(f"augmentation {name!r} has no option(s) {', '.join(sorted(unknown))}; "
                             f"options: {', '.join(defaults)}")
        steps.append((name, {**defaults, **(overrides or {})}))
    return steps


def check_chain(spec, sample_rate: int) -> None:
    """Refuse (ValueError naming --augment) a chain that would fail every shard, before a build
    does any work: unknown or repeated names, unknown options, audiomentations missing, or a
    transform that fails on a 0.25 s test signal at the build's rate (each forced to apply)."""
    try:
        steps = parse_spec(spec)
    except (ValueError, TypeError) as e:
        raise ValueError(f"--augment {spec!r}: {e}") from None
    if not steps:
        return
    probe = (0.1 * np.random.default_rng(0).standard_normal(max(1, sample_rate // 4))).astype(
        np.float32)
    try:
        AugmentChain({name: {**kwargs, "p": 1.0} for name, kwargs in steps})(probe, sample_rate, 0)
    except ImportError as e:
        raise ValueError(f"--augment needs the audiomentations package ({e}): pip install "
                         f"audiomentations, or `make install`") from None
    except Exception as e:  # noqa: BLE001 - any failure here would fail every shard the same way
        detail = " ".join(str(e).split())[:200]
        raise ValueError(f"--augment {spec!r} fails on a test signal at {sample_rate} Hz "
                         f"({type(e).__name__}: {detail}); change the chain or its options") from None


class AugmentChain:
    """Build once per worker from a spec; call per part with that part's seed."""

    def __init__(self, spec=None):
        self.steps = parse_spec(spec)
        self._transforms = []
        if self.steps:
            import audiomentations

            self._transforms = [getattr(audiomentations, TRANSFORMS[name][0])(**kwargs)
                                for name, kwargs in self.steps]

    def __bool__(self) -> bool:
        return bool(self.steps)

    @property
    def spec(self) -> dict[str, dict[str, Any]]:
        """JSON-serialisable spec that rebuilds this exact chain."""
        return {name: dict(kwargs) for name, kwargs in self.steps}

    def draw(self, seed: int, sample_rate: int) -> dict:
        """What the chain does to a part with this seed: {} for an empty chain, else
        {"seed", "spec", "applied": [{"name", ...drawn parameters}]} (JSON-serialisable)."""
        if not self.steps:
            return {}
        applied = []
        probe = np.ones(1024, dtype=np.float32)   # RMS 1: an "snr" draw becomes std per RMS
        with _seeded(int(seed)):
            for (name, _), transform in zip(self.steps, self._transforms):
                transform.randomize_parameters(probe, sample_rate)
                drawn = transform.parameters
                if drawn.get("should_apply"):
                    applied.append({"name": name, **_describe(name, drawn)})
        return {"seed": int(seed), "spec": self.spec, "applied": applied}

    def apply(self, x: np.ndarray, sample_rate: int, params: dict | None) -> np.ndarray:
        """x augmented as `params` (a `draw` record) says: same length, float32, a copy."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not params or not self.steps:
            return x.copy()
        recorded = {a["name"]: a for a in params.get("applied", [])}
        unknown = sorted(set(recorded) - {name for name, _ in self.steps})
        if unknown:
            raise ValueError(f"augmentation record names {', '.join(unknown)}, not in the chain "
                             f"{', '.join(name for name, _ in self.steps)}")
        with _seeded(int(params["seed"])):
            y = x.copy()
            for (name, _), transform in zip(self.steps, self._transforms):
                if name not in recorded or len(y) == 0:
                    continue
                transform.parameters = {"should_apply": True, **_parameters(name, recorded[name], y)}
                y = np.asarray(transform.apply(y, sample_rate), dtype=np.float32)
        y = _same_length(np.asarray(y, dtype=np.float32), len(x))
        if not np.isfinite(y).all():
            raise ValueError(f"augmentation {params['applied']} produced non-finite samples "
                             f"(seed {params['seed']})")
        return y

    def __call__(self, x: np.ndarray, sample_rate: int, seed: int) -> tuple[np.ndarray, dict]:
        """(augmented copy of x, params): `draw` then `apply`."""
        params = self.draw(seed, sample_rate)
        return self.apply(x, sample_rate, params), params


@contextmanager
def _seeded(seed: int):
    with _GLOBAL_RNG_LOCK:
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _describe(name: str, drawn: dict) -> dict:
    out = {k: _plain(v) for k, v in drawn.items() if k != "should_apply"}
    if name == "gain" and "amplitude_ratio" in out:
        out["gain_db"] = float(20.0 * np.log10(out["amplitude_ratio"]))
    if name == "snr" and "noise_std" in out:
        out["noise_std_per_rms"] = out.pop("noise_std")   # drawn on a probe of RMS 1
    return out


def _parameters(name: str, record: dict, y: np.ndarray) -> dict:
    """A record's entry as the transform's `parameters` for the part `y` about to be changed."""
    out = {k: v for k, v in record.items() if k not in ("name", "gain_db")}
    if name == "snr":
        rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
        out = {"noise_std": rms * float(out.pop("noise_std_per_rms"))}
    return out


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _same_length(y: np.ndarray, n: int) -> np.ndarray:
    if len(y) == n:
        return y
    out = np.zeros(n, dtype=np.float32)
    out[:min(n, len(y))] = y[:n]
    return out
