"""Caption templates for composed audio, in named sets, each template with a stable id.

Sets:
  - `paper`: exactly the paper's wording (docs/METHOD.md), one template per relation; the default.
  - `extended`: the paper's templates first, then paraphrases (after / followed by / then /
    at the same time ...), so trainers and evaluators can hold templates out by id.
  - `extended-position`: `extended` plus captions that name one event's place ("{a} comes
    first", "it ends with {b}"), for ZSTE's task 5, whose own prompt ("the first sound is {c}")
    none of them uses.
  - `captioned`, `captioned-extended`, `captioned-extended-position`: the same for captioned
    datasets (AudioCaps, Clotho), whose a and b are whole sentences; pieces are joined with
    commas and re-cased to read naturally.

`reversed` audio is b then a, so it is captioned with the forward templates, a and b swapped;
the template ids are the forward ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from teminal.manifests.vocabulary import RELATIONS, label_text


@dataclass(frozen=True)
class Template:
    id: str     # stable across releases: "paper.before", "ext.after", "cap.followed_by"
    text: str   # a format string over {a} and {b}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _t(pairs) -> tuple[Template, ...]:
    return tuple(Template(i, text) for i, text in pairs)


_PAPER = {
    "single": _t([("paper.single", "Single sound of {a}")]),
    "double": _t([("paper.combined", "Combined sound of {a} and {b}")]),
    "forward": _t([("paper.before", "{a} before {b}")]),
    "overlay": _t([("paper.while", "{a} while {b}")]),
}

_EXTENDED = {
    "single": _PAPER["single"] + _t([
        ("ext.label", "{a}"),
        ("ext.the_sound_of", "the sound of {a}"),
        ("ext.a_sound_of", "a sound of {a}"),
    ]),
    "double": _PAPER["double"] + _t([
        ("ext.and", "{a} and {b}"),
        ("ext.sounds_of", "sounds of {a} and {b}"),
    ]),
    "forward": _PAPER["forward"] + _t([
        ("ext.after", "{b} after {a}"),
        ("ext.followed_by", "{a} followed by {b}"),
        ("ext.then", "{a} then {b}"),
        ("ext.first_then", "first {a}, then {b}"),
    ]),
    "overlay": _PAPER["overlay"] + _t([
        ("ext.at_the_same_time_as", "{a} at the same time as {b}"),
        ("ext.together", "{a} and {b} together"),
        ("ext.while_swapped", "{b} while {a}"),
    ]),
}

def _plus_forward(base: dict, pairs) -> dict:
    """`base` with more forward templates (reversed audio uses them too, a and b swapped)."""
    return {**base, "forward": base["forward"] + _t(pairs)}


# One event's place, said four ways: "first" / "last" and "starts" / "ends", each with the event
# before and after the place word, so the text cannot read the place from word order alone.
_EXTENDED_POSITION = _plus_forward(_EXTENDED, [
    ("pos.comes_first", "{a} comes first"),
    ("pos.comes_last", "{b} comes last"),
    ("pos.starts_with", "it starts with {a}"),
    ("pos.ends_with", "it ends with {b}"),
])

_CAPTIONED = {
    "single": _t([("cap.caption", "{a}")]),
    "double": _t([("cap.and", "{a}, and {b}")]),
    "forward": _t([("cap.followed_by", "{a}, followed by {b}")]),
    "overlay": _t([("cap.while", "{a}, while {b}")]),
}

_CAPTIONED_EXTENDED = {
    "single": _CAPTIONED["single"] + _t([("cap.single_sound", "Single sound: {a}")]),
    "double": _CAPTIONED["double"] + _t([("cap.combined", "Combined sound: {a}, and {b}")]),
    "forward": _CAPTIONED["forward"] + _t([
        ("cap.before", "{a}, before {b}"),
        ("cap.then", "{a}, then {b}"),
        ("cap.after", "{b}, after {a}"),
        ("cap.first_then", "First {a}, then {b}"),
    ]),
    "overlay": _CAPTIONED["overlay"] + _t([
        ("cap.at_the_same_time_as", "{a}, at the same time as {b}"),
        ("cap.while_swapped", "{b}, while {a}"),
    ]),
}

_CAPTIONED_EXTENDED_POSITION = _plus_forward(_CAPTIONED_EXTENDED, [
    ("cap.at_the_start", "{a}, at the start"),
    ("cap.at_the_end", "{b}, at the end"),
    ("cap.starts_with", "It starts with this: {a}"),
    ("cap.ends_with", "It ends with this: {b}"),
])

TEMPLATE_SETS: dict[str, dict[str, tuple[Template, ...]]] = {
    "paper": _PAPER,
    "extended": _EXTENDED,
    "captioned": _CAPTIONED,
    "captioned-extended": _CAPTIONED_EXTENDED,
    "extended-position": _EXTENDED_POSITION,
    "captioned-extended-position": _CAPTIONED_EXTENDED_POSITION,
}
# the sets a build is asked for (--template-set); a captioned dataset uses each one's captioned
# flavour (CAPTIONED_SETS)
LABEL_TEMPLATE_SETS = tuple(name for name in TEMPLATE_SETS if not name.startswith("captioned"))
CAPTIONED_SETS = {"paper": "captioned", "extended": "captioned-extended",
                  "extended-position": "captioned-extended-position",
                  **{name: name for name in TEMPLATE_SETS if name.startswith("captioned")}}


def templates_for(relation: str, template_set: str = "paper") -> tuple[Template, ...]:
    """The templates of `relation` in `template_set`, canonical first (reversed -> forward's)."""
    if template_set not in TEMPLATE_SETS:
        raise ValueError(f"unknown template set {template_set!r}; choose one of "
                         f"{', '.join(TEMPLATE_SETS)}")
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; choose one of {', '.join(RELATIONS)}")
    return TEMPLATE_SETS[template_set]["forward" if relation == "reversed" else relation]


def template_ids(template_set: str) -> list[str]:
    """Every template id of a set, in order, without repeats."""
    ids: dict[str, None] = {}
    for relation in RELATIONS:
        ids.update((t.id, None) for t in templates_for(relation, template_set))
    return list(ids)


def render_captions(relation: str, a: str, b: str | None = None,
                    template_set: str = "paper") -> tuple[str, list[str], list[str]]:
    """(canonical caption, all captions, their template ids) of one composed sample.

    `a` and `b` are labels ("dog", "chirping_birds" -> "chirping birds") for the label sets and
    whole captions for the captioned sets; `b` is ignored for `single`."""
    templates = templates_for(relation, template_set)
    if relation != "single" and not b:
        raise ValueError(f"relation {relation!r} needs two parts, got b={b!r}")
    if relation == "reversed":
        a, b = b, a
    fill = _fill_captioned if template_set.startswith("captioned") else _fill_labels
    captions = [fill(t.text, a, b) for t in templates]
    return captions[0], captions, [t.id for t in templates]


def clean_caption(text: str) -> str:
    """A caption as a clause: surrounding blanks and trailing sentence punctuation removed."""
    return " ".join(text.split()).rstrip(" .!;,")


def caption_text(clip, index: int = 0) -> str:
    """What stands for a source clip in a caption: its label, else its `index`-th caption
    (modulo the number of captions), cleaned."""
    if getattr(clip, "label", None):
        return label_text(clip.label)
    captions = tuple(getattr(clip, "captions", ()) or ())
    if not captions:
        raise ValueError(f"clip {getattr(clip, 'source_id', clip)!r} has neither a label nor captions")
    return clean_caption(captions[index % len(captions)])


def is_captioned(clip) -> bool:
    return not getattr(clip, "label", None) and bool(getattr(clip, "captions", ()))


def resolve_template_set(template_set: str, captioned: bool) -> str:
    """The set to use for a dataset: label sets map to their captioned flavour for captions."""
    if template_set not in TEMPLATE_SETS:
        raise ValueError(f"unknown template set {template_set!r}; choose one of "
                         f"{', '.join(TEMPLATE_SETS)}")
    return CAPTIONED_SETS[template_set] if captioned else template_set


def _fill_labels(text: str, a: str, b: str | None) -> str:
    return text.format(a=label_text(a), b=label_text(b) if b else "")


def _fill_captioned(text: str, a: str, b: str | None) -> str:
    """Join whole captions: the one that opens the sentence is capitalised, the others lowercased
    (acronyms such as "TV" are left alone), trailing periods dropped."""
    parts = {"a": clean_caption(a), "b": clean_caption(b) if b else ""}
    out = {}
    for key, value in parts.items():
        opens = text.startswith("{" + key + "}")
        out[key] = _upper_first(value) if opens else _lower_first(value)
    return text.format(**out)


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


def _lower_first(s: str) -> str:
    first_word = s.split(" ", 1)[0]
    if first_word == "I" or (len(first_word) > 1 and first_word.isupper()):
        return s  # "I" and acronyms ("TV", "DJ") keep their case
    return s[:1].lower() + s[1:]
