"""The report's "int8 quantization" section: where int8 loses (tflite_layers) and what keeping
ops in float costs and buys (tflite_repair), as Markdown and as an HTML fragment.

The section exists only when the build ran those steps and they produced something: a step
that was "not needed", failed or was skipped recorded no figures, and an empty section would
read as "int8 lost nothing". The facts are the steps' own info dicts, untouched, so
report.json carries exactly what build.json does (`quantization_facts`); the renderers only
format them.
"""

from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from .formats.tflite.layers import ROUNDING_ONLY, layer_of
from .metrics import LABELS
from .runner import BUILT, CACHED, BuildResult

Facts = Mapping[str, Any]
LAYERS_KIND, REPAIR_KIND = "tflite_layers", "tflite_repair"
LAYERS_CSV = "tflite/int8/layers.csv"
DIGEST_SHOWN = 12  # hex digits of the calibration set's sha256: enough to tell two sets apart
EXPLANATION = (f"rmse/scale ≈ {ROUNDING_ONLY:.2f} is rounding alone; rel. error is the share of each channel's "
               "signal int8 loses (median over channels)")  # fmt: skip


def quantization_facts(result: BuildResult) -> dict[str, Any]:
    """{"layers": tflite_layers' info or None, "repair": tflite_repair's info or None}: the
    info of a step that ran (built, or cached: its info is the recorded one)."""
    return {"layers": _info(result, LAYERS_KIND), "repair": _info(result, REPAIR_KIND)}


def _info(result: BuildResult, kind: str) -> dict[str, Any] | None:
    for step in result.steps:
        # Only a step that ran has figures; "not needed", failed and skipped steps have none.
        if step.spec.kind == kind and step.status in (BUILT, CACHED) and step.info:
            return dict(step.info)
    return None


def has_section(facts: Facts | None) -> bool:
    return bool(facts) and any(facts.get(k) for k in ("layers", "repair"))  # type: ignore[union-attr]


# --- cells, shared by Markdown and HTML --------------------------------------------------------


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _layer_name(op: str, op_type: str = "") -> str:
    """What a reader knows an op by: its Keras layer; the op type (or the op's own name) where
    the tensor name does not show the layer."""
    return layer_of(op) or op_type or op


def _layer_cells(row: Mapping[str, Any]) -> list[str]:
    return [
        str(row.get("rank", "")),
        row.get("layer") or row.get("op_type") or row.get("op", ""),
        row.get("op_type", ""),
        f"{_num(row.get('range_min'), '{:.4g}')}..{_num(row.get('range_max'), '{:.4g}')}",
        _num(row.get("rmse_over_scale"), "{:.2f}"),
        _num(row.get("rel_error"), "{:.1%}"),
    ]


LAYER_HEADERS = ("rank", "layer", "op type", "range", "rmse/scale", "rel. error")
LAYER_NUMERIC = (True, False, False, True, True, True)


def _layers_heading(layers: Facts) -> str:
    return f"Worst layers (of {layers.get('ops', 0)} quantized ops; full list in {LAYERS_CSV})"


def _layers_notes(layers: Facts) -> list[str]:
    notes = [EXPLANATION + "."]
    beyond = layers.get("beyond_rounding")
    if beyond is not None:
        notes.append(f"{beyond} of {layers.get('ops', 0)} ops lose more than rounding (rmse/scale above "
                     f"{2 * ROUNDING_ONLY:.2f}).")  # fmt: skip
    cal = layers.get("calibration") or {}
    if cal:
        digest = str(cal.get("sha256") or "")
        notes.append(f"Int8 ranges calibrated on {cal.get('samples')} samples of the {cal.get('split')} split"
                     f" (sha256 {digest[:DIGEST_SHOWN]}…).")  # fmt: skip
    return notes


def _value(metric: str, value: Any) -> str:
    # Accuracy reads as a percentage; an error keeps its target's units, 4 significant digits.
    return _num(value, "{:.2%}" if metric == "accuracy" else "{:.4g}")


def _drop(metric: str, drop: Any) -> str:
    # A positive drop is worse whichever way the metric runs (repair.metric_drop).
    return _num(None if drop is None else drop * 100, "{:.2f} pp") if metric == "accuracy" else _num(drop, "{:.4g}")


def _kb(nbytes: Any) -> str:
    return _num(None if nbytes is None else nbytes / 1024, "{:,.1f}")


def _ops_in_float(n: int) -> str:
    return f"int8, {n} op{'' if n == 1 else 's'} in float"


def _metric_label(repair: Facts) -> tuple[str, str]:
    ref = repair.get("reference") or {}
    metric = ref.get("metric") or (repair.get("full_int8") or {}).get("metric") or "accuracy"
    output = ref.get("output") or ""
    label = LABELS.get(metric, metric) + (f" ({output})" if output else "")
    return metric, label


def _cost_rows(repair: Facts) -> list[list[str]]:
    metric, _ = _metric_label(repair)
    ref = repair.get("reference") or {}
    full = repair.get("full_int8") or {}
    chosen = repair.get("chosen") or {}
    # The SavedModel's size and latency come from other steps with other protocols; the
    # repair step measured only its metric, so only that is compared here.
    rows = [["SavedModel (float)", _value(metric, ref.get("value")), "-", "-", "-"]]
    for label, fig in (("full int8", full), (_ops_in_float(len(chosen.get("float_ops") or ())), chosen)):
        rows.append([label, _value(metric, fig.get("value")), _drop(metric, fig.get("drop")), _kb(fig.get("bytes")),
                     _num(fig.get("p50_ms"), "{:.4f}")])  # fmt: skip
    return rows


def _cost_headers(repair: Facts) -> list[str]:
    return ["", _metric_label(repair)[1], "drop vs float", "size KB", "p50 ms"]


def _float_line(repair: Facts) -> str:
    ops = list((repair.get("chosen") or {}).get("float_ops") or ())
    total = repair.get("quantized_ops")
    of = f" of {total}" if total is not None else ""
    if not ops:
        return f"No op kept in float: full int8 is the chosen model ({total if total is not None else '?'} quantized ops)."
    names = ", ".join(_layer_name(op) for op in ops)
    return f"Kept in float ({len(ops)}{of} quantized ops): {names}."


def _bound_line(repair: Facts) -> str:
    where = f"on the {repair.get('split')} split, {repair.get('samples')} samples"
    bound = repair.get("max_metric_drop")
    if bound is None:  # the user chose the float ops; this is what that choice costs
        return f"Ops chosen by export.tflite.int8.float_layers; measured {where}."
    return f"Bound: max_metric_drop {bound:g} {where}."


def _search_headers(repair: Facts) -> list[str]:
    return ["float ops", "last op added", _metric_label(repair)[1], "drop", "top-1 agr.", "size KB", "meets"]


def _search_rows(repair: Facts) -> list[list[str]]:
    rows = []
    for trial in repair.get("trials") or ():
        metric = trial.get("metric") or "accuracy"
        added = trial.get("added") or ""
        rows.append([str(trial.get("float_ops", "")), _layer_name(added) if added else "-",
                     _value(metric, trial.get("value")), _drop(metric, trial.get("drop")),
                     _agreement(trial), _kb(trial.get("bytes")), "✓" if trial.get("meets") else "✗"])  # fmt: skip
    return rows


def _agreement(trial: Facts) -> str:
    """Top-1 agreement with the SavedModel; marked when the int8 tolerance did not hold."""
    agreement = trial.get("top1_agreement")
    text = "-" if agreement is None else f"{agreement:.1%}"
    return text if trial.get("within_tolerance", True) else f"{text} (tolerance missed)"


def _shows_search(repair: Facts) -> bool:
    # Without a bound nothing was searched: the trials are just full int8 and the user's set.
    return repair.get("max_metric_drop") is not None and bool(repair.get("trials"))


# --- Markdown ---------------------------------------------------------------------------------


def _md_table(headers: Sequence[str], numeric: Sequence[bool], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "".join("---:|" if n else "---|" for n in numeric)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def quantization_markdown(facts: Facts | None) -> str:
    """The section as Markdown ("" when the build ran neither step). Full op names are left
    out: they run to hundreds of characters and would break a pull request's table."""
    if not has_section(facts):
        return ""
    assert facts is not None
    lines = ["## int8 quantization", ""]
    layers, repair = facts.get("layers"), facts.get("repair")
    if layers:
        lines += [f"### {_layers_heading(layers)}", ""]
        lines += _md_table(LAYER_HEADERS, LAYER_NUMERIC, [_layer_cells(r) for r in layers.get("worst") or ()])
        for note in _layers_notes(layers):  # a paragraph each: Markdown joins adjacent lines
            lines += ["", note]
        lines += [""]
    if repair:
        lines += ["### Keeping ops in float: cost and benefit", ""]
        lines += _md_table(_cost_headers(repair), (False, True, True, True, True), _cost_rows(repair))
        lines += ["", _float_line(repair), "", _bound_line(repair), ""]
        if _shows_search(repair):
            lines += ["Search, in the order tried:", ""]
            lines += _md_table(_search_headers(repair), (True, False, True, True, True, False), _search_rows(repair))
            lines += [""]
    return "\n".join(lines)


# --- HTML -------------------------------------------------------------------------------------


def _th(text: str, numeric: bool) -> str:
    return f'<th class="{"num" if numeric else "text"}">{html.escape(text)}</th>'


def _td(text: str, numeric: bool, extra_class: str = "", title: str = "") -> str:
    cls = ("num" if numeric else "text") + (f" {extra_class}" if extra_class else "")
    tip = f' title="{html.escape(title)}"' if title else ""
    return f'<td class="{cls}"{tip}>{html.escape(text)}</td>'


def _html_table(headers: Sequence[str], numeric: Sequence[bool], body: Sequence[str]) -> str:
    head = "".join(_th(h, n) for h, n in zip(headers, numeric))
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _layers_html(layers: Facts) -> str:
    body = []
    for row in layers.get("worst") or ():
        cells = _layer_cells(row)
        # The layer is shown; the full op name (often several fused ops) only on hover, so it
        # cannot widen the table.
        tds = [_td(c, n, "name" if i == 1 else "", str(row.get("op", "")) if i == 1 else "")
               for i, (c, n) in enumerate(zip(cells, LAYER_NUMERIC))]  # fmt: skip
        body.append("<tr>" + "".join(tds) + "</tr>")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in _layers_notes(layers))
    return f"<h3>{html.escape(_layers_heading(layers))}</h3>\n{_html_table(LAYER_HEADERS, LAYER_NUMERIC, body)}\n{notes}\n"


def _repair_html(repair: Facts) -> str:
    cost_numeric = (False, True, True, True, True)
    cost = ["<tr>" + "".join(_td(c, n) for c, n in zip(row, cost_numeric)) + "</tr>" for row in _cost_rows(repair)]
    ops = (repair.get("chosen") or {}).get("float_ops") or ()
    float_line = f'<p class="note" title="{html.escape("; ".join(ops))}">{html.escape(_float_line(repair))}</p>' if ops \
        else f'<p class="note">{html.escape(_float_line(repair))}</p>'  # fmt: skip
    parts = ["<h3>Keeping ops in float: cost and benefit</h3>", _html_table(_cost_headers(repair), cost_numeric, cost),
             float_line, f'<p class="note">{html.escape(_bound_line(repair))}</p>']  # fmt: skip
    if _shows_search(repair):
        search_numeric = (True, False, True, True, True, True, False)
        body = []
        for trial, row in zip(repair.get("trials") or (), _search_rows(repair)):
            tds = []
            for i, (c, n) in enumerate(zip(row, search_numeric)):
                if i == 1:
                    tds.append(_td(c, n, "name", str(trial.get("added") or "")))
                elif i == 6:
                    tds.append(_td(c, n, "passed" if trial.get("meets") else "failed"))
                else:
                    tds.append(_td(c, n))
            body.append("<tr>" + "".join(tds) + "</tr>")
        parts += ["<h4>Search, in the order tried</h4>", _html_table(_search_headers(repair), search_numeric, body)]
    return "\n".join(parts) + "\n"


def quantization_html(facts: Facts | None) -> str:
    """The section as an HTML fragment for report_table.html_page ("" when the build ran
    neither step). Every text from the build is escaped."""
    if not has_section(facts):
        return ""
    assert facts is not None
    layers, repair = facts.get("layers"), facts.get("repair")
    return ('<section class="quantization">\n<h2>int8 quantization</h2>\n'
            + (_layers_html(layers) if layers else "") + (_repair_html(repair) if repair else "") + "</section>\n")

