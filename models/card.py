"""The short model card an export carries: what a user of the exported file needs to know.

    base model      the spec the first stage started from (the `init` chain of provenances)
    training data   each stage's build id(s), whether the data was the synthetic stand-in
    recipe          each stage's steps and the settings that define the method
    the head        whether the model had an order-aware audio head and whether the file has it
    ZSTE            the figures of a ZSTE result of this checkpoint, with their 95% intervals

Everything comes from the checkpoint's TrainingProvenance (config.json "extra") and, for the
figures, from a result JSON as `evaluate zste --out` writes it (read by its documented schema:
`metrics` entries {accuracy, n, ci95, chance}; teminal.evaluate is not imported here).
"""
from __future__ import annotations

import json
from pathlib import Path

from teminal.models.provenance import TrainingProvenance

# the settings that say what was trained how (the rest: config.json "extra" of the checkpoint)
RECIPE_KEYS = ("recipe", "lr", "max_steps", "epochs", "groups_per_batch", "audio_head",
               "trainable", "lr_mult", "retain_singles", "alpha_same_overlap",
               "alpha_same_time", "average_from", "average_every", "templates", "where", "seed")
MAX_CHAIN = 16  # stages followed back through `init` (a cycle of hand-edited configs stops)


class ZsteResultError(ValueError):
    """A --zste file that is not a ZSTE result of this model."""


def stages(provenance: TrainingProvenance) -> list[TrainingProvenance]:
    """The provenance of each stage, first stage first, following `init` back through the
    project checkpoints it names (a folder that is gone ends the chain)."""
    chain = [provenance]
    while len(chain) < MAX_CHAIN:
        earlier = TrainingProvenance.of_checkpoint(chain[-1].init)
        if earlier is None or not earlier.recorded:
            break
        chain.append(earlier)
    return chain[::-1]


def read_zste(path: Path, weights_sha256: str, model=None) -> dict:
    """A ZSTE result JSON of the model whose weights hash to `weights_sha256` (`model`, when
    given, names the command that scores it in the message of a result of other weights)."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZsteResultError(f"--zste {path}: cannot read it ({e}); pass the JSON that "
                              f"evaluate zste's --out wrote") from None
    if not (isinstance(result, dict) and result.get("command") == "zste"
            and isinstance(result.get("metrics"), dict)):
        raise ZsteResultError(f"--zste {path} is not a ZSTE result (no command 'zste' with "
                              f"metrics); pass the JSON that evaluate zste's --out wrote")
    scored = (result.get("model") or {}).get("checkpoint_sha256")
    if scored != weights_sha256:
        raise ZsteResultError(
            f"--zste {path} scored weights {str(scored)[:12]}, not this model's "
            f"({weights_sha256[:12]}): evaluate this model ({zste_command(model)}) and pass "
            f"that file")
    return result


def zste_command(model) -> str:
    """`evaluate zste` of `model` on the data it trained on (its test split), written next to
    its checkpoint; the placeholders MODEL and DATA where the model does not tell."""
    import shlex

    source = (model.config.get("source") if model is not None else None) or "MODEL"
    data = TrainingProvenance.from_config(model.config).data if model is not None else None
    folder = Path(source)
    out = folder / "zste.json" if folder.is_dir() else Path("zste.json")
    return "`" + shlex.join(["evaluate", "zste", "--model", source, "--data", data or "DATA",
                             "--out", str(out)]) + "`"


def _is_score(d) -> bool:
    return isinstance(d, dict) and "accuracy" in d and "n" in d


def zste_rows(metrics: dict) -> list[tuple[str, dict]]:
    """(name, score) of the headline figures: every task score with a chance level, its seen /
    unseen class-pair split, and the same one level down (CompA-order, held-out wordings)."""
    rows = []
    for key, value in metrics.items():
        if _is_score(value) and "chance" in value:
            rows.append((key, value))
            rows += [(f"{key}, {part} pairs", value[part]) for part in ("seen", "unseen")
                     if _is_score(value.get(part))]
        elif isinstance(value, dict) and not _is_score(value):
            rows += [(f"{key}.{k}", v) for k, v in value.items()
                     if _is_score(v) and "chance" in v]
    return rows


def _fmt(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _zste_section(result: dict | None, head_dropped: bool) -> list[str]:
    if result is None:
        return ["No ZSTE figures: none was given (`python -m teminal.models.export ... --zste "
                "RESULT.json`, RESULT from `evaluate zste --model MODEL --out RESULT.json`)."]
    data = result.get("data") or {}
    synthetic = data.get("synthetic")
    lines = ["**These figures are the checkpoint's, with its order-aware head; the exported "
             "file (without it) was not scored and will score differently.**", ""] \
        if head_dropped else []
    lines += [f"Scored on build {data.get('catalog_build_id')} ("
             + ("**synthetic** stand-in data" if synthetic else "real data") + f"), "
             f"split {data.get('split', 'test')}, result label {result.get('label')!r}.", "",
             "| metric | accuracy | 95% interval | n | chance |", "|---|---:|---:|---:|---:|"]
    for name, s in zste_rows(result["metrics"]):
        ci = s.get("ci95")
        interval = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"
        lines.append(f"| {name} | {_fmt(s.get('accuracy'))} | {interval} | {s.get('n')} | "
                     f"{_fmt(s.get('chance'))} |")
    return lines


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _stage_lines(chain: list[TrainingProvenance]) -> list[str]:
    lines = []
    for p in chain:
        synthetic = {True: "synthetic stand-in data", False: "real data"}.get(p.synthetic,
                                                                             "data not recorded")
        lines.append(f"- **{p.stage or 'unknown stage'}** from `{p.init}`: {p.steps} steps on "
                     f"{p.world_size or 1} process(es); build {p.build_ids} ({synthetic})")
        settings = [f"{k} = {_value(p.train_config[k])}" for k in RECIPE_KEYS
                    if p.train_config.get(k) not in (None, [], {}, "")]
        if settings:
            lines.append("  - " + "; ".join(settings))
    return lines


def model_card(model, fmt: str, path: Path, how_to_load: str, head_dropped: bool,
               zste: dict | None) -> str:
    """The markdown card of `model` exported as `fmt` at `path`."""
    chain = stages(TrainingProvenance.from_config(model.config))
    trained = [p for p in chain if p.recorded]
    base = trained[0].init if trained else model.config.get("source")
    synthetic = any(p.synthetic for p in trained)
    head = model.config.get("audio_head")
    lines = [f"# {path.name}: {model.family} CLAP post-trained with TeminAL", "",
             f"Exported from `{model.config.get('source')}` (weights sha256 "
             f"{model.weights_sha256[:16]}...) by `python -m teminal.models.export --format "
             f"{fmt}`.", "", "## Load it", "", "```python", how_to_load, "```", "",
             "## Base model", "", f"`{base}`", "", "## Training data and recipe", ""]
    if trained:
        if synthetic:
            lines += ["**Trained on the synthetic stand-in data** (procedural sounds, not real "
                      "audio): the figures show the method's mechanics, not real-world skill.", ""]
        lines += _stage_lines(trained)
        lines += ["", "Every setting of the last stage: the checkpoint's config.json, "
                  "\"extra\".\"train_config\"."]
    else:
        lines += ["Not trained by TeminAL (no training provenance recorded)."]
    lines += ["", "## Order-aware audio head", ""]
    if head is None:
        lines += ["None: the file holds the whole model."]
    elif head_dropped:
        lines += [f"**Dropped.** The model has an order-aware audio head ({_value(head)}), which "
                  f"this format cannot hold; exported with --without-head, the file holds the "
                  f"pooled model only, and its audio embeddings differ from the post-trained "
                  f"model's (the order the head learned is not in them). The checkpoint folder "
                  f"keeps the head: `teminal.models.load_model(\"{model.config.get('source')}\")`."]
    lines += ["", "## ZSTE (zero-shot temporal evaluation)", ""]
    lines += _zste_section(zste, head_dropped and head is not None)
    return "\n".join(lines) + "\n"
