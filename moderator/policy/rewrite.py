"""Change thresholds in a policy file's text, keeping everything else (comments, order, layout)
byte for byte: values are replaced where they stand, new keys go after the category's name in
the category's own style (a new line in a block mapping, ``, key: value`` in a flow one ``{...}``).
An edit of the text rather than a dump of a parsed document: a round-trip dumper (ruamel.yaml)
keeps comments but re-indents and re-wraps what it writes."""

from __future__ import annotations

import yaml


def with_thresholds(text: str, thresholds: dict[str, dict[str, float]]) -> str:
    """``thresholds``: category -> {"review": x, "block": y} (either key optional).

    Existing values are replaced where they stand; missing keys are added under the category's
    ``name``. Categories not named are left alone.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        raise ValueError("an empty policy has no categories to set thresholds in")
    categories = next((v for k, v in root.value if k.value == "categories"), None)
    edits: list[tuple[int, int, str]] = []
    for cat in getattr(categories, "value", []):
        fields = {k.value: (k, v) for k, v in cat.value}
        name = fields.get("name", (None, None))[1]
        wanted = thresholds.get(str(getattr(name, "value", "")), {})
        for key, value in wanted.items():
            new = _number(value)
            if key in fields:
                node = fields[key][1]
                edits.append((node.start_mark.index, node.end_mark.index, new))
            else:
                name_key, name_val = fields["name"]
                if cat.flow_style:
                    edits.append((name_val.end_mark.index, name_val.end_mark.index, f", {key}: {new}"))
                else:
                    indent = " " * name_key.start_mark.column
                    edits.append((name_val.end_mark.index, name_val.end_mark.index, f"\n{indent}{key}: {new}"))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _number(value: float) -> str:
    """The value as written: short when it is short (0.56), else every digit, so the threshold
    read back is the one computed (a rounded-up block threshold would stop blocking its edge)."""
    if value == 0:
        return "0.0"
    if value == round(value, 9):
        return f"{value:.9f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.1f}"
    return format(value, ".17g")
