"""Three-way parity: Keras (when there is one), torch and the NumPy referee on the same input.

For every pair of implementations and for every RNN layer's output and the model's output, the
report gives the largest absolute and relative difference and where it occurs. Each layer is
compared in the form Keras returns it: the whole state sequence for a layer that returns
sequences, the last state otherwise.

Keras is optional: it is used when a live model is passed, or when a model file is passed and
Keras can be imported (``keras_path``); otherwise the report says that Keras did not take part.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .compare import FLOAT32_ATOL, Diff, compare
from .reference import numpy_forward

DEFAULT_BATCH = 8
DEFAULT_STEPS_IF_VARIABLE = 10


@dataclass
class ParityReport:
    """Every comparison made; ``ok`` when all are within tolerance."""

    diffs: list[Diff]
    implementations: list[str]
    input_shape: tuple
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.diffs)

    @property
    def worst(self) -> Diff | None:
        return max(self.diffs, key=lambda d: d.max_abs / max(d.atol + d.rtol, 1e-300), default=None)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "implementations": self.implementations,
            "input_shape": list(self.input_shape),
            "notes": self.notes,
            "comparisons": [
                {"name": d.name, "shape": list(d.shape), "max_abs": d.max_abs, "max_rel": d.max_rel,
                 "mean_abs": d.mean_abs, "where": list(d.where), "atol": d.atol, "rtol": d.rtol, "ok": d.ok}
                for d in self.diffs
            ],
        }

    def __str__(self) -> str:
        return self.table()

    def table(self) -> str:
        rows = [("comparison", "shape", "max |diff|", "max rel", "at", "ok")]
        for d in self.diffs:
            rows.append((d.name, "x".join(map(str, d.shape)), f"{d.max_abs:.2e}", f"{d.max_rel:.2e}",
                         str(d.where), "ok" if d.ok else "MISMATCH"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [f"note: {n}" for n in self.notes]
        verdict = "PARITY: all comparisons within tolerance" if self.ok else "MISMATCH: see rows marked MISMATCH"
        lines.append(f"{verdict} (implementations: {', '.join(self.implementations)}; input {self.input_shape})")
        return "\n".join(lines)


class ParityError(AssertionError):
    """Raised by :func:`assert_parity`; carries the report."""

    def __init__(self, report: ParityReport):
        super().__init__("\n" + report.table())
        self.report = report


def _default_input(model, batch: int, seed: int) -> np.ndarray:
    steps, feats = model.config.input_shape
    steps = DEFAULT_STEPS_IF_VARIABLE if steps is None else steps
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (batch, steps, feats)).astype(np.float32)


def _torch_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        t = model.as_input(x)
        states = model.hidden_states(t)
        out = model(t)
    per_layer = [s if layer.return_sequences else s[:, -1] for s, layer in zip(states, model.rnn)]
    return [a.cpu().numpy() for a in per_layer] + [out.cpu().numpy()]


def _numpy_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    fwd = numpy_forward(model.get_weights(), x, config=model.config, return_states=True)
    per_layer = [s if layer.return_sequences else s[:, -1] for s, layer in zip(fwd.states, model.rnn)]
    return per_layer + [fwd.output]


def _keras_outputs(keras_model, x: np.ndarray) -> list[np.ndarray]:
    import keras  # a live Keras model is only ever given by a caller who has Keras

    rnn_layers = [layer for layer in keras_model.layers if type(layer).__name__ == "SimpleRNN"]
    probe = keras.Model(keras_model.inputs[0], [layer.output for layer in rnn_layers] + [keras_model.outputs[0]])
    outs = probe(x, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outs]


def _keras_available() -> bool:
    return importlib.util.find_spec("keras") is not None


def check(torch_model, x: Any = None, *, keras_model=None, keras_path=None, atol: float = FLOAT32_ATOL,
          rtol: float = FLOAT32_ATOL, batch: int = DEFAULT_BATCH, seed: int = 0) -> ParityReport:
    """Run torch, NumPy (float64) and Keras (when available) on the same input and compare them all.

    ``x`` defaults to a seeded uniform(-1, 1) batch of ``batch`` sequences in the model's input
    shape. ``keras_path`` loads a full Keras model file with Keras, if Keras is installed; a file
    whose architecture is not the torch model's is a :class:`~parity.keras_files.KerasFileError`
    naming the settings that differ.
    """
    notes = []
    if x is None:
        x = _default_input(torch_model, batch, seed)
    x = torch_model.as_input(x).cpu().numpy()  # validated (N, L, F), in the model's dtype
    if keras_model is None and keras_path is not None:
        from .convert import check_same_architecture
        from .keras_files import read_keras_file

        spec = read_keras_file(keras_path)  # h5py alone: a few ms
        if spec.has_architecture:
            # another model in the file would reach Keras's own shape errors, or compare unlike models
            check_same_architecture(torch_model, spec)
        if _keras_available():
            import keras

            try:
                keras_model = keras.models.load_model(str(keras_path), compile=False)
            except Exception as e:  # Keras's loaders raise many types; the file was already read without it
                notes.append(f"Keras {keras.__version__} could not load {keras_path} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}); compared torch with the NumPy referee only. "
                             f"(Keras 3 does not read every Keras 2 file; torchrnn does.)")
        else:
            notes.append("Keras is not installed: compared torch with the NumPy referee only "
                         "(pip install 'torchrnn[keras]' to add Keras)")
    results = {"torch": _torch_outputs(torch_model, x), "numpy": _numpy_outputs(torch_model, x)}
    if keras_model is not None:
        results["keras"] = _keras_outputs(keras_model, x)
        if len(results["keras"]) != len(results["torch"]):
            raise ValueError(f"the Keras model has {len(results['keras']) - 1} SimpleRNN layers, "
                             f"the torch model {len(results['torch']) - 1}")
    names = [f"simple_rnn{'' if i == 0 else f'_{i}'}" for i in range(len(torch_model.rnn))] + ["output"]
    pairs = [(a, b) for a, b in (("torch", "numpy"), ("keras", "numpy"), ("torch", "keras"))
             if a in results and b in results]
    diffs = []
    for a, b in pairs:
        for name, va, vb in zip(names, results[a], results[b]):
            if va.shape != vb.shape:
                raise ValueError(f"the models differ: {a} gives {name} of shape {va.shape}, {b} of shape {vb.shape}")
            diffs.append(compare(va, vb, atol=atol, rtol=rtol, name=f"{a} vs {b}: {name}"))
    return ParityReport(diffs, list(results), tuple(x.shape), notes)


def assert_parity(torch_model, x: Any = None, **kwargs) -> ParityReport:
    """:func:`check`, raising :class:`ParityError` (an AssertionError) with the table on a mismatch."""
    report = check(torch_model, x, **kwargs)
    if not report.ok:
        raise ParityError(report)
    return report
