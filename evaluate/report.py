"""Result JSON (schema, provenance, validation), readable tables, and side-by-side comparison.

Every evaluation writes one JSON object:

    schema_version  int (SCHEMA_VERSION)
    command         "zste" | "zeroshot" | "retrieval"
    label           short name used in comparisons ("base", "stage_b"); default: model spec
    argv            the command line
    model           {spec, family, checkpoint_sha256, train_catalog_build_id, sample_rate}
    data            {path, dataset, split, catalog_build_id, synthetic}
    seed            int
    protocol        how the numbers were obtained, in words and settings
    metrics         per task; every accuracy is {accuracy (0..1 or null), n, correct, ci95}
    warnings        (retrieval) lines the table prints above it, e.g. too few clips evaluated
    timing          {audio_clips, clips_per_s, wall_seconds, ...}
    created         ISO time (the only field that differs between identical runs)
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from teminal.manifests.vocabulary import STAGE_RELATIONS
from teminal.manifests.digests import file_sha256  # noqa: F401  (re-exported: tests, callers)

SCHEMA_VERSION = 1
COMMANDS = ("zste", "zeroshot", "retrieval")
REQUIRED = {
    "schema_version": int, "command": str, "model": dict, "data": dict, "seed": int,
    "metrics": dict, "timing": dict,
}
REQUIRED_MODEL = ("spec", "checkpoint_sha256")
REQUIRED_DATA = ("catalog_build_id", "synthetic")
ZSTE_TASKS = ("task1_single", "task2_mixture", "task3_order", "task4_compositional",
              "task5_position")
TIMING_ROBUST = "3 order, timing-robust"   # the row of the timing sweep's summary figure


# ---------------------------------------------------------------------------------------------
# Provenance

def checkpoint_file(spec: str) -> Path | None:
    """The weights file behind a model spec (teminal.models.weights_file); None for specs
    without one, such as `small` (random initialisation), or a spec that does not parse."""
    from teminal.models.errors import ModelSpecError
    from teminal.models.registry import weights_file

    try:
        return weights_file(spec)
    except ModelSpecError:
        return None


def checkpoint_sha256(spec: str, model=None) -> str:
    """sha256 of the weights file, "random-init" for a spec without one (`small`). A loaded
    model knows its own (`weights_sha256`)."""
    if model is not None:
        return model.weights_sha256
    path = checkpoint_file(spec)
    return file_sha256(path) if path is not None else "random-init"


def model_provenance(spec: str, model=None) -> dict:
    from teminal.models.provenance import TrainingProvenance

    prov = TrainingProvenance.of_model(model) if model is not None else TrainingProvenance()
    return {
        "spec": spec,
        "family": model.family if model is not None else None,
        "checkpoint_sha256": checkpoint_sha256(spec, model),
        "train_stage": prov.stage,
        "train_catalog_build_id": prov.build_ids,
        "train_data": prov.data,
        "sample_rate": model.sample_rate if model is not None else None,
    }


def new_result(command: str, *, spec: str, model=None, data: dict, seed: int, protocol: dict,
               metrics: dict, timing: dict, label: str | None = None, argv: Sequence[str] | None = None,
               **extra) -> dict:
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; one of {COMMANDS}")
    result = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "label": label or default_label(spec),
        "argv": list(argv if argv is not None else sys.argv),
        "model": model_provenance(spec, model),
        "data": {"catalog_build_id": None, "synthetic": False, **data},
        "seed": int(seed),
        "protocol": protocol,
        "metrics": metrics,
        **extra,
        "timing": timing,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    problems = validate_result(result)
    if problems:
        raise ValueError("result does not follow the schema: " + "; ".join(problems))
    return result


def default_label(spec: str) -> str:
    from teminal.models.registry import spec_label

    return spec_label(spec)


# ---------------------------------------------------------------------------------------------
# Schema

def validate_result(d: dict) -> list[str]:
    """Problems with a result object (empty when it follows the schema)."""
    problems = []
    if not isinstance(d, dict):
        return ["a result is a JSON object"]
    for key, kind in REQUIRED.items():
        if key not in d:
            problems.append(f"missing {key!r}")
        elif not isinstance(d[key], kind) or (kind is int and isinstance(d[key], bool)):
            problems.append(f"{key!r} should be {kind.__name__}, is {type(d[key]).__name__}")
    if problems:
        return problems
    if d["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {d['schema_version']} is not {SCHEMA_VERSION}")
    if d["command"] not in COMMANDS:
        problems.append(f"command {d['command']!r} is not one of {COMMANDS}")
    problems += [f"model.{k} missing" for k in REQUIRED_MODEL if k not in d["model"]]
    problems += [f"data.{k} missing" for k in REQUIRED_DATA if k not in d["data"]]
    if not isinstance(d["data"].get("synthetic"), bool):
        problems.append("data.synthetic should be true or false")
    if d["command"] == "zste":
        for task in ZSTE_TASKS:
            if task in d["metrics"]:
                problems += _check_score(d["metrics"][task], f"metrics.{task}")
        if "task1_single" not in d["metrics"]:
            problems.append("metrics.task1_single missing")
    for path, score in _scores(d["metrics"]):
        problems += _check_score(score, path)
    return problems


def _check_score(s, where: str) -> list[str]:
    if not isinstance(s, dict) or "accuracy" not in s or "n" not in s:
        return [f"{where} needs 'accuracy' and 'n'"]
    acc, n = s["accuracy"], s["n"]
    out = []
    if not isinstance(n, int) or n < 0:
        out.append(f"{where}.n should be a count, is {n!r}")
    if acc is None:
        if n:
            out.append(f"{where}.accuracy is null with n={n}")
    elif not 0.0 <= float(acc) <= 1.0:
        out.append(f"{where}.accuracy {acc} outside 0..1")
    return out


def _scores(metrics: dict, prefix: str = "metrics") -> Iterable[tuple[str, dict]]:
    for key, value in metrics.items():
        if isinstance(value, dict):
            path = f"{prefix}.{key}"
            if "accuracy" in value:
                yield path, value
            yield from _scores(value, path)


def write_result(result: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_result(path) -> dict:
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no result file {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON ({e}); pass a file written by `evaluate`") from None
    problems = validate_result(d)
    if problems:
        raise ValueError(f"{path} is not an evaluation result: {'; '.join(problems)}")
    return d


# ---------------------------------------------------------------------------------------------
# Rows: what a table shows and what `compare` lines up

def _acc(s: dict | None) -> float | None:
    return None if not s else s.get("accuracy")


@dataclass(frozen=True)
class Row:
    name: str
    score: dict            # at least `accuracy`; optionally n, ci95, chance, seen, unseen
    variant: bool = False  # a breakdown of the row above it


def rows(result: dict) -> list[Row]:
    """What a table shows, in display order."""
    m, command = result["metrics"], result["command"]
    out: list[Row] = []
    if command == "zste":
        names = {"task1_single": "1 single", "task2_mixture": "2 mixture (overlay)",
                 "task3_order": "3 order (fwd+rev)", "task4_compositional": "4 compositional",
                 "task5_position": "5 position"}
        variants = {"task2_mixture": ("concatenation",), "task3_order": STAGE_RELATIONS["b"],
                    "task5_position": ("forward", "reversed")}
        for task, name in names.items():
            if task not in m:
                continue
            out.append(Row(name, m[task]))
            for v in variants.get(task, ()):
                out.append(Row(f"{name[:1]}   {v}", m[task]["variants"][v], variant=True))
            if task == "task3_order" and "timing_sweep" in m:
                # beside the paper-protocol figure: the same task at its worst junction
                out.append(Row(TIMING_ROBUST, m["timing_sweep"]["timing_robust"]["order"]))
        tg = m.get("template_generalisation")
        if tg:
            out.append(Row("3 order, held-out wording", tg["heldout"]))
        if "compa_order" in m:
            for k in ("text", "audio", "group"):
                out.append(Row(f"CompA-order {k}", m["compa_order"][k]))
    elif command == "zeroshot":
        folds = m.get("folds", {})
        for name, s in folds.items():
            out.append(Row(f"fold {name}", s, variant=len(folds) > 1))
        if "all" in m and len(folds) > 1:
            out.append(Row("all folds", m["all"]))
    elif command == "retrieval":
        for direction, short in (("text_to_audio", "text->audio"), ("audio_to_text", "audio->text")):
            d = m.get(direction, {})
            for k, v in d.items():
                if k.startswith(("R@", "mAP@")):
                    out.append(Row(f"{short} {k}", {"accuracy": v, "n": d.get("n")}))
    return out


def headline(result: dict) -> dict[str, float | None]:
    """The few numbers a comparison plot shows per model."""
    return {name: _acc(score) for name, score in headline_scores(result).items()}


def headline_scores(result: dict) -> dict[str, dict]:
    """The headline metrics with their scores: accuracy, ci95 and, where defined, the task's
    own chance level (a seen/unseen part inherits its task's) and the order-blind ceiling."""
    m = result["metrics"]
    if result["command"] != "zste":
        return {row.name: row.score for row in rows(result)}
    order = m.get("task3_order", {})
    ceiling = {"order_blind_ceiling": order.get("order_blind_ceiling", 0.5)}
    picks = [("1 single", m.get("task1_single"), {}), ("2 mixture", m.get("task2_mixture"), {}),
             ("3 order", order or None, {})]
    if "unseen" in order:
        picks.append(("3 order, unseen pairs", order["unseen"],
                      {"chance": order.get("chance"), **ceiling}))
    if "timing_sweep" in m:
        picks.append((TIMING_ROBUST, m["timing_sweep"]["timing_robust"]["order"], {}))
    if "template_generalisation" in m:
        picks.append(("3 order, held-out wording", m["template_generalisation"]["heldout"], ceiling))
    picks += [("4 compositional", m.get("task4_compositional"), {}),
              ("5 position", m.get("task5_position"), {})]
    if "compa_order" in m:
        picks.append(("CompA group", m["compa_order"]["group"], {}))
    return {name: {**extra, **score} for name, score, extra in picks if score is not None}


# ---------------------------------------------------------------------------------------------
# Printing

def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(s: dict) -> str:
    ci = s.get("ci95")
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"


def _sub(s: dict | None) -> str:
    return "-" if not s else f"{_fmt(s.get('accuracy'))} ({s.get('n', 0)})"


def header_lines(result: dict) -> list[str]:
    model, data = result["model"], result["data"]
    lines = [f"{result['command'].upper()}  {result.get('label', '')}  model: {model['spec']}  "
             f"(sha256 {str(model['checkpoint_sha256'])[:12]})"]
    where = data.get("path") or data.get("root") or ""
    build = f"  build {data['catalog_build_id']}" if data.get("catalog_build_id") else ""
    lines.append(f"data: {data.get('dataset', '')} {data.get('split', '')} {where}{build}  seed {result['seed']}")
    if data.get("synthetic"):
        lines.append("NOTE: SYNTHETIC data (procedural sounds): numbers show the method works, "
                     "not how it does on real audio")
    lines += [f"WARNING: {w}" for w in result.get("warnings", [])]
    return lines


def format_table(result: dict) -> str:
    lines = header_lines(result)
    has_split = any("unseen" in row.score for row in rows(result))
    first, value = ("metric", "value") if result["command"] == "retrieval" else ("task", "acc")
    cols = f"{first:<28} {value:>6} {'95% CI':>13} {'n':>6} {'chance':>7}"
    if has_split:
        cols += f" {'seen (n)':>14} {'unseen (n)':>14}"
    lines += [cols, "-" * len(cols)]
    for row in rows(result):
        name, s = row.name, row.score
        line = (f"{name:<28} {_fmt(s.get('accuracy')):>6} {_ci(s):>13} {s.get('n', '') or 0:>6} "
                f"{_fmt(s.get('chance')):>7}")
        if has_split:
            line += f" {_sub(s.get('seen')) if 'seen' in s else '':>14} " \
                    f"{_sub(s.get('unseen')) if 'unseen' in s else '':>14}"
        lines.append(line)
    lines += _footer(result)
    return "\n".join(lines)


def _cosine(d: dict) -> str:
    split = [f"{k} {_fmt(d[k])}" for k in ("seen", "unseen") if k in d]
    return _fmt(d.get("mean")) + (f" ({', '.join(split)})" if split else "")


def _footer(result: dict) -> list[str]:
    out = []
    m, t = result["metrics"], result.get("timing", {})
    if result["command"] == "zste":
        pairs = m.get("pairs")
        td = result.get("training_data", {})
        if pairs:
            out.append(f"class pairs: {pairs['test_pairs']} in test, {pairs['seen_pairs']} seen in "
                       f"training ({pairs['seen_groups']} seen / {pairs['unseen_groups']} unseen groups)")
        elif td and not td.get("available", True):
            out.append(f"seen/unseen pairs: not reported ({td.get('reason')})")
        conf = m.get("task3_order", {}).get("confusion")
        if conf:
            short = {"forward": "fwd", "reversed": "rev", "overlay": "ovl"}
            out.append("order confusion (rows: true fwd/rev/ovl audio; columns: predicted "
                       "a-before-b / b-before-a / a-while-b): " +
                       "  ".join(f"{short.get(lab, lab)} {row}"
                                 for lab, row in zip(conf["labels"], conf["counts"])))
        cosine = m.get("task3_order", {}).get("order_cosine")
        if cosine:
            out.append(f"order cosine (1 = a tower cannot tell the orders apart): text "
                       f"a-before-b vs b-before-a {_cosine(cosine['text'])}; audio forward vs "
                       f"reversed {_cosine(cosine['audio'])}")
        if "timing_sweep" in m:
            out += sweep_lines(m["timing_sweep"], m.get("task3_order", {}))
    if result["command"] == "retrieval":
        items = result.get("items", {})
        coverage = items.get("coverage")
        out.append(f"clips: {items.get('found')} found, {items.get('missing')} missing of "
                   f"{items.get('listed')} listed; captions {items.get('captions')}"
                   + (f"; coverage {coverage:.1%}" if coverage is not None else ""))
    if t:
        # zeroshot/retrieval count model inputs: a long clip is several windows
        what, unit = ("audio clips", "clips/s") if result["command"] == "zste" else \
            ("audio windows", "windows/s")
        out.append(f"timing: {t.get('audio_clips')} {what} embedded at "
                   f"{_fmt(t.get('clips_per_s'), 1)} {unit}, {t.get('texts_embedded')} texts, "
                   f"wall {_fmt(t.get('wall_seconds'), 1)} s")
    return out


def robust_line(sweep: dict, order: dict) -> str:
    """Where the timing-robust figure was measured, beside the paper-protocol figure."""
    robust = sweep["timing_robust"]
    pairs = "held-out pairs" if robust["pairs"] == "unseen" else "all pairs"
    paper = order.get(robust["pairs"]) if robust["pairs"] == "unseen" else order
    at = "-" if robust["junction"] is None else f"{robust['junction']:g}"
    return (f"timing-robust order: {_fmt(robust['order'].get('accuracy'))} on {pairs} at "
            f"junction {at}, the worst of {', '.join(f'{j:g}' for j in sweep['junctions'])} "
            f"(the paper's protocol, this build's own timing: {_fmt(_acc(paper))})")


def sweep_lines(sweep: dict, order: dict) -> list[str]:
    """The timing sweep as a small table: order (all, seen, unseen pairs), the CompA scores
    and the order confusion of the concatenations at each junction."""
    lines = [robust_line(sweep, order),
             f"timing sweep: task 3 and CompA-order with the second event at each junction "
             f"(fraction of the clip; reversed mirrored) on {sweep['groups']} of "
             f"{sweep['of_groups']} groups",
             f"  {'junction':>8} {'order':>6} {'95% CI':>13} {'seen (n)':>14} {'unseen (n)':>14} "
             f"{'CompA grp':>9} {'text':>6} {'audio':>6}  confusion fwd / rev (a-before-b, "
             f"b-before-a, a-while-b)"]
    for p in sweep["points"]:
        o, c = p["order"], p["compa_order"]
        counts = p["confusion"]["counts"]
        lines.append(f"  {p['junction']:>8g} {_fmt(o.get('accuracy')):>6} {_ci(o):>13} "
                     f"{_sub(o.get('seen')) if 'seen' in o else '':>14} "
                     f"{_sub(o.get('unseen')) if 'unseen' in o else '':>14} "
                     f"{_fmt(_acc(c['group'])):>9} {_fmt(_acc(c['text'])):>6} "
                     f"{_fmt(_acc(c['audio'])):>6}  fwd {counts[0]} rev {counts[1]}")
    return lines


def compare_table(results: Sequence[dict], labels: Sequence[str] | None = None) -> str:
    """Models side by side (one column each) with the difference of every later model vs the
    first; rows are the union of all results' rows, seen/unseen splits included."""
    if not results:
        raise ValueError("compare needs at least one result")
    labels = list(labels or unique_labels(results))
    per_result = [_compare_values(r) for r in results]
    # row order: that of the result with the most rows, then any row only others have
    names = list(max(per_result, key=len))
    names += [n for values in per_result for n in values if n not in names]
    table = {n: [values.get(n) for values in per_result] for n in names}
    width = max([10] + [len(x) for x in labels]) + 1
    head = f"{'metric':<38}" + "".join(f"{x:>{width}}" for x in labels)
    head += "".join(f"{'d ' + x:>{width + 2}}" for x in labels[1:])
    lines = []
    commands = sorted({r["command"] for r in results})
    if len(commands) > 1:
        lines.append(f"NOTE: comparing different commands ({', '.join(commands)})")
    for label, r in zip(labels, results):
        syn = "  SYNTHETIC" if r["data"].get("synthetic") else ""
        lines.append(f"{label}: {r['model']['spec']} (sha256 {str(r['model']['checkpoint_sha256'])[:12]}){syn}")
        lines += [f"WARNING ({label}): {w}" for w in r.get("warnings", [])]
    builds = {r["data"].get("catalog_build_id") for r in results}
    if len(builds) > 1:
        lines.append(f"NOTE: results come from different data builds: {sorted(map(str, builds))}")
    lines += [head, "-" * len(head)]
    for name, values in table.items():
        line = f"{name:<38}" + "".join(f"{_fmt(v):>{width}}" for v in values)
        base = values[0]
        for v in values[1:]:
            d = None if (v is None or base is None) else v - base
            line += f"{('-' if d is None else f'{d:+.3f}'):>{width + 2}}"
        lines.append(line)
    lines += [f"{label}: {robust_line(r['metrics']['timing_sweep'], r['metrics'].get('task3_order', {}))}"
              for label, r in zip(labels, results) if "timing_sweep" in r["metrics"]]
    return "\n".join(lines)


def _compare_values(result: dict) -> dict[str, float | None]:
    out = {}
    for row in rows(result):
        out[row.name] = row.score.get("accuracy")
        if row.variant:
            continue    # seen/unseen of the main rows only, or the table drowns
        for part in ("seen", "unseen"):
            if isinstance(row.score.get(part), dict):
                out[f"{row.name} [{part}]"] = row.score[part].get("accuracy")
    for p in result["metrics"].get("timing_sweep", {}).get("points", []):
        name = f"3 order @ junction {p['junction']:g}"
        out[name] = _acc(p["order"])
        for part in ("seen", "unseen"):
            if part in p["order"]:
                out[f"{name} [{part}]"] = _acc(p["order"][part])
        out[f"CompA group @ junction {p['junction']:g}"] = _acc(p["compa_order"]["group"])
    return out


def unique_labels(results: Sequence[dict]) -> list[str]:
    labels, seen = [], {}
    for r in results:
        base = r.get("label") or default_label(r["model"]["spec"])
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels
